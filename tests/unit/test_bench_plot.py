"""`bench ... --plot`: the PNG of latency distributions, and the CLI option that asks for it."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from order_engine.bench.plot import format_ms, plot_latency_distributions
from order_engine.bench.stats import percentile
from order_engine.cli import app

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _lognormal(n: int, mu: float, sigma: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(mu, sigma) for _ in range(n)]


def test_writes_a_png_of_one_wide_distribution(tmp_path: Path) -> None:
    samples = _lognormal(5000, 3.0, 0.8, seed=1)  # ~2 ms .. ~400 ms: log-x
    out = plot_latency_distributions(
        {"POST /api/orders": samples}, "bench ingest: 2,500 orders/s, 64 connections",
        tmp_path / "ingest.png")

    assert out == tmp_path / "ingest.png"
    assert out.stat().st_size > 20_000  # axes, bars, text: far from an empty canvas
    width, height = _png_size(out)
    assert width > 800
    assert height > 400
    pixels = imread(out)
    assert pixels.shape[:2] == (height, width)
    assert pixels.min() < pixels.max()  # something was drawn


def test_writes_several_series_and_keeps_an_empty_one_in_the_legend(tmp_path: Path) -> None:
    out = plot_latency_distributions(
        {"end to end": _lognormal(500, 8.0, 0.4, seed=2),
         "POST /api/orders": _lognormal(500, 3.0, 0.5, seed=3),
         "nothing measured": []},
        "bench e2e: 500 orders\nsecond line", tmp_path / "e2e.png")

    assert _png_size(out)[0] > 800
    assert imread(out).ndim == 3


def test_narrow_single_valued_and_non_positive_samples_still_plot(tmp_path: Path) -> None:
    rng = random.Random(4)
    cases = {
        "narrow.png": {"narrow": [rng.gauss(40, 2) for _ in range(300)]},   # linear x
        "single.png": {"one value": [5.0]},                                  # zero range
        # a few deliveries "before" their commit (two clocks): log-x, drawn at the floor
        "skew.png": {"skewed": [rng.gauss(20, 9) for _ in range(300)] + [900.0]},
        "nan.png": {"with nan": [1.0, float("nan"), 3.0, float("inf")]},
    }
    for name, series in cases.items():
        out = plot_latency_distributions(series, name, tmp_path / name)
        assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_every_series_empty_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "empty.png"
    with pytest.raises(ValueError, match="no latency samples"):
        plot_latency_distributions({"a": [], "b": [float("nan")]}, "nothing", target)
    with pytest.raises(ValueError, match="no latency samples"):
        plot_latency_distributions({}, "nothing", target)
    assert not target.exists()


def test_percentiles_match_the_bench_tables_nearest_rank_rule() -> None:
    ordered = [float(v) for v in range(1, 101)]
    assert percentile(ordered, 50) == 51.0  # LoadResult.percentile: sorted[int(q/100*n)]
    assert percentile(ordered, 99) == 100.0
    assert percentile([7.0], 90) == 7.0
    assert [format_ms(v) for v in (0.1234, 12.34, 1234.5)] == ["0.12", "12.3", "1,234"]


@pytest.mark.parametrize("command", ["ingest", "e2e", "ws"])
def test_bench_commands_offer_plot(command: str) -> None:
    result = CliRunner().invoke(app, ["bench", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--plot" in result.output


def test_plot_into_a_missing_directory_fails_before_the_run(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: were the load to start, it would fail differently.
    result = CliRunner().invoke(app, [
        "bench", "ingest", "--url", "http://127.0.0.1:9", "--api-key", "k", "--duration", "1",
        "--plot", str(tmp_path / "missing" / "ingest.png")], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "--plot" in result.output
    assert "does not exist" in result.output
