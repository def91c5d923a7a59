"""The order lifecycle, the slippage floor and the retry back-off."""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from order_engine.domain.orders import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    IllegalTransitionError,
    OrderStatus,
    can_transition,
    check_transition,
    min_amount_out,
    retry_delay_ms,
)

S = OrderStatus

# The documented lifecycle, written out here rather than read back from the module:
# pending -> routing -> building -> submitted -> confirmed, a retry from any step after
# routing starts over at routing, and any live order may fail.
EXPECTED_EDGES = {
    (S.PENDING, S.ROUTING),
    (S.ROUTING, S.BUILDING),
    (S.BUILDING, S.SUBMITTED),
    (S.SUBMITTED, S.CONFIRMED),
    (S.ROUTING, S.RETRYING),
    (S.BUILDING, S.RETRYING),
    (S.SUBMITTED, S.RETRYING),
    (S.RETRYING, S.ROUTING),
    *((status, S.FAILED) for status in S if status not in {S.CONFIRMED, S.FAILED}),
}
ALL_PAIRS = [(current, target) for current in S for target in S]
NON_TERMINAL = [status for status in S if status not in {S.CONFIRMED, S.FAILED}]


# --- transitions ------------------------------------------------------------------------

def test_allowed_transitions_are_the_documented_lifecycle() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)
    table = {(cur, tgt) for cur, targets in ALLOWED_TRANSITIONS.items() for tgt in targets}
    assert table == EXPECTED_EDGES


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_check_transition_accepts_exactly_the_allowed_pairs(
    current: OrderStatus, target: OrderStatus
) -> None:
    allowed = (current, target) in EXPECTED_EDGES
    assert can_transition(current, target) is allowed
    if allowed:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransitionError) as caught:
            check_transition(current, target)
        assert (caught.value.current, caught.value.target) == (current, target)
        assert str(caught.value) == f"illegal order transition {current} -> {target}"


@given(st.lists(st.sampled_from(list(S)), max_size=40))
def test_random_walk_from_pending_follows_the_lifecycle(targets: list[OrderStatus]) -> None:
    status = S.PENDING
    for target in targets:
        if (status, target) in EXPECTED_EDGES:
            check_transition(status, target)
            status = target
        else:
            with pytest.raises(IllegalTransitionError):
                check_transition(status, target)
        if status.is_terminal:
            # Once an order is confirmed or failed, nothing moves it again.
            assert all(not can_transition(status, t) for t in S)


@pytest.mark.parametrize("status", [S.CONFIRMED, S.FAILED])
def test_terminal_statuses_accept_nothing(status: OrderStatus) -> None:
    assert status.is_terminal
    assert status in TERMINAL_STATUSES
    for target in S:
        with pytest.raises(IllegalTransitionError):
            check_transition(status, target)


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_every_live_status_can_fail(status: OrderStatus) -> None:
    assert not status.is_terminal
    check_transition(status, S.FAILED)


def test_terminal_statuses_are_confirmed_and_failed() -> None:
    assert {S.CONFIRMED, S.FAILED} == TERMINAL_STATUSES


def _reachable_from(start: OrderStatus) -> set[OrderStatus]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in ALLOWED_TRANSITIONS[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def test_every_status_is_reachable_from_pending() -> None:
    assert _reachable_from(S.PENDING) == set(S)


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_no_live_status_is_a_dead_end(status: OrderStatus) -> None:
    assert S.CONFIRMED in _reachable_from(status)


def test_happy_path_is_legal() -> None:
    path = [S.PENDING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    for current, target in pairwise(path):
        check_transition(current, target)


def test_a_retry_goes_back_to_routing_or_fails() -> None:
    assert ALLOWED_TRANSITIONS[S.RETRYING] == {S.ROUTING, S.FAILED}
    path = [S.PENDING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.RETRYING, S.ROUTING, S.BUILDING]
    for current, target in pairwise(path):
        check_transition(current, target)


# --- min_amount_out ---------------------------------------------------------------------

expected_outs = st.integers(min_value=0, max_value=2**64)
bps_values = st.integers(min_value=0, max_value=10_000)


@given(expected=expected_outs, bps=bps_values)
def test_min_amount_out_is_expected_less_slippage_rounded_down(expected: int, bps: int) -> None:
    floor = min_amount_out(expected, bps)
    assert floor <= expected
    assert floor >= Fraction(expected * (10_000 - bps), 10_000) - 1
    assert floor <= Fraction(expected * (10_000 - bps), 10_000)


@given(expected=expected_outs, bps=bps_values, more=bps_values)
def test_more_slippage_never_raises_the_floor(expected: int, bps: int, more: int) -> None:
    low, high = sorted((bps, more))
    assert min_amount_out(expected, high) <= min_amount_out(expected, low)


@given(expected=expected_outs)
def test_zero_slippage_demands_the_full_quote(expected: int) -> None:
    assert min_amount_out(expected, 0) == expected
    assert min_amount_out(expected, 10_000) == 0


@pytest.mark.parametrize(
    ("expected", "bps", "floor"),
    [(1_000_000, 50, 995_000), (999, 50, 994), (150_250_000, 100, 148_747_500), (1, 1, 0)],
)
def test_min_amount_out_examples(expected: int, bps: int, floor: int) -> None:
    assert min_amount_out(expected, bps) == floor


@pytest.mark.parametrize("bps", [-1, 10_001, 100_000])
def test_min_amount_out_rejects_bad_slippage(bps: int) -> None:
    with pytest.raises(ValueError, match="slippage_bps"):
        min_amount_out(1_000, bps)


# --- retry_delay_ms ---------------------------------------------------------------------

attempts = st.integers(min_value=1, max_value=200)
base_delays = st.integers(min_value=1, max_value=60_000)
max_delays = st.integers(min_value=1, max_value=3_600_000)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def _window(attempt: int, base_ms: int, max_ms: int) -> int:
    return min(max_ms, base_ms << (attempt - 1))  # base * 2**(attempt-1), capped


@given(attempt=attempts, base_ms=base_delays, max_ms=max_delays, jitter=jitters)
def test_retry_delay_lies_in_the_upper_half_of_the_window(
    attempt: int, base_ms: int, max_ms: int, jitter: float
) -> None:
    window = _window(attempt, base_ms, max_ms)
    delay = retry_delay_ms(attempt, base_ms, max_ms, jitter)
    # Whole milliseconds: half of an odd window rounds down.
    assert max(1, window // 2) <= delay <= window
    assert delay <= max_ms


@given(attempt=attempts, base_ms=base_delays, max_ms=max_delays, jitter=jitters)
def test_retry_delay_never_shrinks_with_more_attempts(
    attempt: int, base_ms: int, max_ms: int, jitter: float
) -> None:
    assert _window(attempt, base_ms, max_ms) <= _window(attempt + 1, base_ms, max_ms)
    assert retry_delay_ms(attempt, base_ms, max_ms, jitter) <= retry_delay_ms(
        attempt + 1, base_ms, max_ms, jitter
    )


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay"),
    [
        (1, 0.0, 50),  # window 100
        (1, 0.5, 75),
        (2, 0.0, 100),  # window 200
        (3, 0.25, 250),  # window 400: 200 + 200 * 0.25
        (7, 0.0, 3_200),  # window 6_400
        (8, 0.0, 5_000),  # 12_800 capped at 10_000
        (50, 0.0, 5_000),
        (50, 0.999, 9_995),
    ],
)
def test_retry_delay_examples(attempt: int, jitter: float, delay: int) -> None:
    assert retry_delay_ms(attempt, 100, 10_000, jitter) == delay


def test_a_one_millisecond_window_still_waits() -> None:
    assert retry_delay_ms(1, 1, 1, 0.0) == 1


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5, math.inf, math.nan])
def test_jitter_outside_unit_interval_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        retry_delay_ms(1, 100, 10_000, jitter)
