"""The chaos suite's reading of failure reasons: infrastructure, or the chain and the
order's own conditions."""

from __future__ import annotations

import pytest

from tests.chaos.harness import failed_by_infrastructure


@pytest.mark.parametrize("reason", [
    "internal error: InternalClientError: cannot switch to state 12; another operation "
    "(2) is in progress",
    "unexpected: an unclassified execution error",
    "order is building but has no stored route",
    "order is submitted but has no stored transaction",
    "",
    None,
])
def test_infrastructure_failures(reason: str | None) -> None:
    assert failed_by_infrastructure(reason)


@pytest.mark.parametrize("reason", [
    "no route can fill this amount",
    "no pool or two-hop path connects these tokens",
    "transaction expired before it landed (gave up after 3 attempts)",
    "transaction dropped: RPC node did not forward it (gave up after 3 attempts)",
    "no venue answered within 2.0s (gave up after 3 attempts)",
    "pool p1 cannot fill this amount",
])
def test_the_chains_answer_and_the_orders_own_conditions(reason: str) -> None:
    assert not failed_by_infrastructure(reason)
