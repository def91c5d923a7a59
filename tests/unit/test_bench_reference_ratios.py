"""Ratios of a bench's figures to its same-run reference."""

from __future__ import annotations

from order_engine.bench.reference import ratios


def test_ratios_follow_dotted_paths_and_say_none_when_a_side_is_missing() -> None:
    figures = {"orders_per_s": 3000.0, "ingest": {"orders_per_s": 1500}, "flag": True}
    reference = {"http": {"requests_per_s": 6000.0, "zero": 0},
                 "postgres": "not measured: no DATABASE_URL"}
    assert ratios(figures, reference, [
        ("orders_per_s", "http.requests_per_s"),
        ("ingest.orders_per_s", "http.requests_per_s"),
        ("orders_per_s", "postgres.commits_per_s"),
        ("orders_per_s", "http.zero"),
        ("flag", "http.requests_per_s"),
        ("missing", "http.requests_per_s"),
    ]) == {
        "orders_per_s / http.requests_per_s": 0.5,
        "ingest.orders_per_s / http.requests_per_s": 0.25,
        "orders_per_s / postgres.commits_per_s": None,
        "orders_per_s / http.zero": None,
        "flag / http.requests_per_s": None,
        "missing / http.requests_per_s": None,
    }
