"""The order and its state machine."""

from __future__ import annotations

from enum import StrEnum


class OrderType(StrEnum):
    MARKET = "market"


class OrderStatus(StrEnum):
    PENDING = "pending"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    RETRYING = "retrying"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({OrderStatus.CONFIRMED, OrderStatus.FAILED})

_S = OrderStatus
ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.PENDING: frozenset({_S.ROUTING, _S.FAILED}),
    _S.ROUTING: frozenset({_S.BUILDING, _S.RETRYING, _S.FAILED}),
    _S.BUILDING: frozenset({_S.SUBMITTED, _S.RETRYING, _S.FAILED}),
    _S.SUBMITTED: frozenset({_S.CONFIRMED, _S.RETRYING, _S.FAILED}),
    _S.RETRYING: frozenset({_S.ROUTING, _S.FAILED}),
    _S.CONFIRMED: frozenset(),
    _S.FAILED: frozenset(),
}


class IllegalTransitionError(Exception):
    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(f"illegal order transition {current} -> {target}")
        self.current = current
        self.target = target


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(current: OrderStatus, target: OrderStatus) -> None:
    if not can_transition(current, target):
        raise IllegalTransitionError(current, target)


def min_amount_out(expected_out: int, slippage_bps: int) -> int:
    """The least output the transaction accepts: expected less the slippage, rounded down."""
    if not 0 <= slippage_bps <= 10_000:
        raise ValueError("slippage_bps must be within 0..10000")
    return expected_out * (10_000 - slippage_bps) // 10_000


def retry_delay_ms(attempt: int, base_ms: int, max_ms: int, jitter: float) -> int:
    """Exponential back-off with "equal jitter": half the window fixed, half picked by `jitter`.

    attempt 1 failed -> up to base, attempt 2 -> up to 2*base, ... capped at max_ms; never 0
    so that a retry is always a little later than the failure.
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be within [0, 1)")
    window = min(max_ms, base_ms * 2 ** max(0, attempt - 1))
    return max(1, int(window / 2 + window / 2 * jitter)) if window > 0 else 0
