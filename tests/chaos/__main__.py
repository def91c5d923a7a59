"""`python -m tests.chaos` (`make chaos`): the full chaos run, printed as tables."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from tests.chaos.harness import ChaosConfig, print_report, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    for f in fields(ChaosConfig):
        default = f.default
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default),
                            default=default)
    args = parser.parse_args()
    report = run_chaos(ChaosConfig(**vars(args)))
    print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
