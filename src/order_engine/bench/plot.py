"""`order-engine bench ... --plot PATH.png`: a PNG of the latency distributions a run measured.

Two panels side by side: a histogram (log-x when the samples span a wide range) and the
empirical CDF with p50/p90/p99 marked on every curve. The percentiles use the same
nearest-rank rule as the figures the bench commands print, so the plot and the table agree.

Drawn with matplotlib's non-interactive Agg canvas directly (no pyplot, no GUI backend,
no global state): safe on a server with no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, PercentFormatter

from order_engine.bench.stats import percentile

QUANTILES = (50.0, 90.0, 99.0)
_MARKERS = {50.0: "o", 90.0: "s", 99.0: "^"}
_LINESTYLES = {50.0: "-", 90.0: "--", 99.0: ":"}
LOG_X_RANGE = 20.0  # log-x when max / min of the positive samples is at least this...
MAX_NON_POSITIVE_SHARE = 0.05  # ...and at most this share of all samples is <= 0
MAX_BINS = 60


def format_ms(value: float) -> str:
    """A latency in ms with as many decimals as its size deserves: 0.12, 12.3, 1,234."""
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def plot_latency_distributions(
    series: Mapping[str, Sequence[float]], title: str, path: Path | str,
) -> Path:
    """Write a PNG of one or more named latency distributions (samples in milliseconds).

    Left panel: histogram, shared bins, each series as a share of its own samples (so
    series of different sizes compare); the x axis is logarithmic when the samples span a
    wide range (see below). Right panel: the empirical CDF of each series on the same x
    scale. p50/p90/p99 are marked on each CDF curve and as vertical lines in the
    histogram. One legend under both panels names each series with its sample count and
    percentile values.

    Log-x is chosen when the positive samples span at least `LOG_X_RANGE` (max / min) and
    at most `MAX_NON_POSITIVE_SHARE` of all samples are zero or negative (a delay measured
    across two clocks can be); those few are then drawn at the smallest positive sample and
    counted in the legend. The percentile values shown are always of the raw samples.

    `title` may span several lines; put the run's key figures in it.

    Empty input: a series with no samples is kept in the legend as "no samples" and drawn
    as nothing; if *every* series is empty there is nothing to show and `ValueError` is
    raised (no file is written). NaN and infinite samples are dropped.

    Returns the path written (always PNG, whatever the suffix).
    """
    cleaned = {name: sorted(v for v in samples if math.isfinite(v))
               for name, samples in series.items()}
    everything = [v for samples in cleaned.values() for v in samples]
    if not everything:
        raise ValueError("no latency samples to plot: every series is empty")

    positives = [v for v in everything if v > 0]
    non_positive = len(everything) - len(positives)
    log_x = (bool(positives) and max(positives) / min(positives) >= LOG_X_RANGE
             and non_positive <= MAX_NON_POSITIVE_SHARE * len(everything))
    floor = min(positives) if log_x else -math.inf  # where log-x draws samples <= 0

    def at(value: float) -> float:
        return max(value, floor)

    # Enough bins to show a shape, few enough that a small run is not a comb.
    bins = max(10, min(MAX_BINS, int(2 * math.sqrt(max(map(len, cleaned.values()))))))
    edges = _bin_edges(at(min(everything)), max(everything), log_x, bins)

    figure = Figure(figsize=(13, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the non-interactive Agg canvas to the figure
    hist_ax, cdf_ax = figure.subplots(1, 2)
    figure.suptitle(title, fontsize=12)

    handles: list[Artist] = []
    for index, (name, samples) in enumerate(cleaned.items()):
        color = f"C{index}"
        if not samples:
            handles += cdf_ax.plot([], [], color=color, label=f"{name}: no samples")
            continue
        marks = {q: percentile(samples, q) for q in QUANTILES}
        drawn = [at(v) for v in samples]
        weights = [100.0 / len(samples)] * len(samples)
        hist_ax.hist(drawn, bins=edges, weights=weights, histtype="stepfilled",
                     color=color, alpha=0.3)
        hist_ax.hist(drawn, bins=edges, weights=weights, histtype="step", color=color,
                     linewidth=1.4)
        for q, value in marks.items():
            hist_ax.axvline(at(value), color=color, linestyle=_LINESTYLES[q], linewidth=1.0)

        label = f"{name} (n={len(samples):,}): " + ", ".join(
            f"p{q:.0f} {format_ms(v)}" for q, v in marks.items()) + " ms"
        clipped = sum(1 for v in samples if v <= 0) if log_x else 0
        if clipped:
            label += f" ({clipped:,} at or below 0 ms, drawn at {format_ms(floor)} ms)"
        handles.append(cdf_ax.ecdf(drawn, color=color, linewidth=1.6, label=label))
        for q, value in marks.items():
            cdf_ax.plot([at(value)], [q / 100], marker=_MARKERS[q], color=color,
                        markersize=7, markeredgecolor="black", markeredgewidth=0.6,
                        linestyle="none")

    hist_ax.set_xlabel("latency (ms)" + (", log scale" if log_x else ""))
    hist_ax.set_ylabel("share of samples per bin (%)")
    hist_ax.set_title("Histogram (lines: p50 solid, p90 dashed, p99 dotted)")

    for q in QUANTILES:
        cdf_ax.axhline(q / 100, color="grey", linestyle=":", linewidth=0.8)
        cdf_ax.annotate(f"p{q:.0f}", xy=(1.0, q / 100), xycoords=("axes fraction", "data"),
                        xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=8, color="dimgrey")
    cdf_ax.set_ylim(0, 1.02)
    cdf_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    cdf_ax.set_xlabel("latency (ms)" + (", log scale" if log_x else ""))
    cdf_ax.set_ylabel("share of samples at or below (%)")
    cdf_ax.set_title("Empirical CDF (markers: p50 ●  p90 ■  p99 ▲)")

    for ax in (hist_ax, cdf_ax):
        _style_x(ax, edges[0], edges[-1], log_x)
        ax.grid(True, which="major", alpha=0.3)

    # One legend under both panels (over the data it would hide a mode or a tail).
    figure.legend(handles=handles, loc="outside lower center", fontsize=9, frameon=False)

    out = Path(path)
    figure.savefig(out, format="png")
    return out


def _bin_edges(lo: float, hi: float, log_x: bool, bins: int) -> list[float]:
    if log_x:
        ratio = hi / lo
        return [lo * ratio ** (i / bins) for i in range(bins + 1)]
    if hi <= lo:  # a single distinct value: one bin around it
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    return [lo + (hi - lo) * i / bins for i in range(bins + 1)]


def _style_x(ax: Axes, lo: float, hi: float, log_x: bool) -> None:
    if log_x:
        ax.set_xscale("log")
        # 1-2-5 ticks over a couple of decades; beyond that they would crowd.
        subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= 2.5 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.6g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))
        # A little room each side, so that lines and markers at the extremes stay visible.
        margin = (hi / lo) ** 0.02
        ax.set_xlim(lo / margin, hi * margin)
    else:
        margin = (hi - lo) * 0.02
        ax.set_xlim(lo - margin, hi + margin)
