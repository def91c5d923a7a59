"""Why an execution attempt failed, and whether trying again can help."""

from __future__ import annotations


class ExecutionError(Exception):
    """Base of the failures the pipeline knows how to classify."""

    transient: bool = False
    code: str = "execution_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(ExecutionError):
    """Worth another attempt: the world may be different in a moment."""

    transient = True
    code = "transient"


class PermanentError(ExecutionError):
    """No attempt will succeed: fail the order at once."""

    code = "permanent"


class VenueTimeoutError(TransientError):
    code = "venue_timeout"


class BlockhashExpiredError(TransientError):
    code = "blockhash_expired"


class TransactionDroppedError(TransientError):
    code = "transaction_dropped"


class SlippageExceededError(TransientError):
    code = "slippage_exceeded"


class NoRouteError(PermanentError):
    code = "no_route"


class InsufficientLiquidityError(PermanentError):
    code = "insufficient_liquidity"


class InvalidPairError(PermanentError):
    code = "invalid_pair"


class PriceImpactTooHighError(PermanentError):
    """The route's price impact is over the order's limit (maxPriceImpactBps)."""

    code = "price_impact_too_high"
