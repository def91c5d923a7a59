"""The one percentile rule of every `order-engine bench` figure, table and plot."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples: sorted[int(q/100 * n)]; 0.0 when
    there are none."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
