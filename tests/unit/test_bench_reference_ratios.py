"""Ratios of a bench's figures to its same-run reference."""

from __future__ import annotations

from order_engine.bench.reference import bracket, ratios


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


def test_a_bracketed_reference_is_the_mean_of_both_passes_with_their_drift() -> None:
    before = {"http": {"server": "bare", "connections": 64, "requests_per_s": 9000.0},
              "postgres": {"fsync": "on", "commits_per_s": 3000.0,
                           "lone_commit_ms_p50": 4.0},
              "redis": "not measured: no REDIS_URL / --redis-url"}
    after = {"http": {"server": "bare", "connections": 64, "requests_per_s": 11000.0},
             "postgres": {"fsync": "on", "commits_per_s": 3000.0, "lone_commit_ms_p50": 4.0},
             "redis": "not measured: no REDIS_URL / --redis-url"}

    reference = bracket(before, after)

    assert reference["http"] == {"server": "bare", "connections": 64,
                                 "requests_per_s": 10000.0}
    assert reference["postgres"]["commits_per_s"] == 3000.0
    assert reference["redis"] == "not measured: no REDIS_URL / --redis-url"
    assert reference["drift"] == {"http.requests_per_s": 0.2, "postgres.commits_per_s": 0.0,
                                  "postgres.lone_commit_ms_p50": 0.0}
    assert reference["passes"] == {"before": before, "after": after}
    assert ratios({"orders_per_s": 2500.0}, reference,
                  [("orders_per_s", "http.requests_per_s")]) == {
        "orders_per_s / http.requests_per_s": 0.25}


def test_without_a_pass_after_the_load_the_reference_is_the_pass_before() -> None:
    before = {"http": {"requests_per_s": 9000.0}}
    reference = bracket(before, None)
    assert reference["http"] == {"requests_per_s": 9000.0}
    assert "drift" not in reference
    assert reference["measured"] == "before the load"
