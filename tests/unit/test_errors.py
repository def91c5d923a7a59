"""Whether a failed attempt is retried (transient) or fails the order at once (permanent)."""

from __future__ import annotations

import pytest

from order_engine.domain.errors import (
    BlockhashExpiredError,
    ExecutionError,
    InsufficientLiquidityError,
    InvalidPairError,
    NoRouteError,
    PermanentError,
    SlippageExceededError,
    TransactionDroppedError,
    TransientError,
    VenueTimeoutError,
)

CLASSIFIED = [
    (VenueTimeoutError, True, "venue_timeout"),
    (BlockhashExpiredError, True, "blockhash_expired"),
    (TransactionDroppedError, True, "transaction_dropped"),
    (SlippageExceededError, True, "slippage_exceeded"),
    (NoRouteError, False, "no_route"),
    (InsufficientLiquidityError, False, "insufficient_liquidity"),
    (InvalidPairError, False, "invalid_pair"),
]


@pytest.mark.parametrize(("error_class", "transient", "code"), CLASSIFIED)
def test_each_failure_is_classified(
    error_class: type[ExecutionError], transient: bool, code: str
) -> None:
    error = error_class("what happened")
    assert error.transient is transient
    assert isinstance(error, TransientError if transient else PermanentError)
    assert not isinstance(error, PermanentError if transient else TransientError)
    assert error.code == code
    assert error.message == "what happened"
    assert str(error) == "what happened"


def test_error_codes_are_distinct() -> None:
    codes = [code for _, _, code in CLASSIFIED]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(("error_class", "transient"), [(TransientError, True),
                                                        (PermanentError, False)])
def test_catching_the_base_class_catches_every_failure(
    error_class: type[ExecutionError], transient: bool
) -> None:
    with pytest.raises(ExecutionError) as caught:
        raise error_class("boom")
    assert caught.value.transient is transient
