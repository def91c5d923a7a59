"""The chaos suite, small enough for every test run (`make chaos` runs the full one)."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.harness import ChaosConfig, ChaosRun, print_report

pytestmark = pytest.mark.e2e


async def test_promises_hold_under_kills_restarts_and_dropped_connections() -> None:
    config = ChaosConfig(orders=150, workers=2, submit_rate=20, worker_kills=3,
                         redis_restarts=1, postgres_drops=1, api_restarts=1, seed=11)
    report = await ChaosRun(config).run()
    print_report(report)
    failed = [f"{i.name}: {i.detail}" for i in report.invariants if not i.ok]
    assert failed == []
    assert report.figures["orders_acknowledged"] == 150
    assert sorted(report.figures["faults"].items()) == [
        ("api_restart", 1), ("postgres_drop", 1), ("redis_restart", 1), ("worker_kill", 3)
    ]
    await asyncio.sleep(0)
