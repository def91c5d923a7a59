"""A Meteora DLMM (liquidity book) pool, in integer base units, rounded as the program rounds.

Liquidity sits in bins. Bin `i` has the fixed price (1 + bin_step / 10_000)^i, in Y base units
per X base unit, held as a Q64.64 fixed-point number computed exactly as the program does.
Inside a bin the swap is constant-sum at that price; a swap walks bins from the active one:
selling X (swap for Y) takes the Y of the active bin and then of the bins below it (the active
id goes down), selling Y takes X from the active bin and the bins above (the id goes up). So in
a settled pool, bins above the active one hold only X and bins below hold only Y.

The fee is charged on the input, per bin: base fee + variable fee, the variable part growing
with the number of bins crossed recently (the volatility accumulator), capped at 10%.

Formulas follow Meteora's lb_clmm program and SDK (MeteoraAg/dlmm-sdk): `math/u64x64_math.rs`
and `math/price_math.rs` (bin price), `math/u128x128_math.rs` (mul/div rounding),
`state/bin.rs` (per-bin swap), `state/lb_pair` (fee rates and fee amounts),
`state/parameters.rs` (volatility references/accumulator), `constants.rs`, and the Rust
quote in `commons/src/quote.rs` (the order of the per-swap and per-bin updates).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from order_engine.domain.errors import InsufficientLiquidityError, InvalidPairError

# --- the program's constants (lb_clmm constants.rs, u64x64_math.rs) ------------------------

SCALE_OFFSET = 64
ONE_Q64 = 1 << SCALE_OFFSET
U128_MAX = (1 << 128) - 1
BASIS_POINT_MAX = 10_000
# Fee rates are in units of 1e-9.
FEE_PRECISION = 1_000_000_000
# The total fee rate is capped at 10%.
MAX_FEE_RATE = 100_000_000
MAX_PROTOCOL_SHARE = 2_500
# The widest bin range any bin step supports (1 bps: (1.0001)^n must fit in 64 integer bits).
MIN_BIN_ID = -443_636
MAX_BIN_ID = 443_636
# pow() walks 19 exponent bits; 2^19 and above would overflow Q64.64 at any bin step.
_MAX_EXPONENT = 0x80000
# Variable fee: variable_fee_control * (va * bin_step)^2 is in 1e-20 units; scaled to 1e-9.
_VARIABLE_FEE_SCALE = 100_000_000_000

SHAPES: tuple[str, ...] = ("spot", "curve", "bid_ask")


# --- fixed-point helpers -------------------------------------------------------------------

def _mul_div(x: int, y: int, denominator: int, *, round_up: bool) -> int:
    """x * y / denominator, rounded as asked (u128x128_math.rs mul_div, in wide integers)."""
    product = x * y
    return -(-product // denominator) if round_up else product // denominator


def _pow_q64(base: int, exponent: int) -> int:
    """base^exponent for a Q64.64 base, step by step as u64x64_math.rs `pow` does.

    A base >= 1 is first replaced by its reciprocal (u128::MAX // base) so every product
    stays within 128 bits, and the result is inverted back at the end; each product is
    truncated (>> 64). Hence negative ids are reciprocals of positive ones only up to this
    rounding.
    """
    invert = exponent < 0
    if exponent == 0:
        return ONE_Q64
    magnitude = -exponent if invert else exponent
    if magnitude >= _MAX_EXPONENT:
        raise ValueError(f"bin id {exponent} is out of the supported price range")
    squared = base
    if squared >= ONE_Q64:
        squared = U128_MAX // squared
        invert = not invert
    result = ONE_Q64
    for bit in range(19):
        if magnitude & (1 << bit):
            result = (result * squared) >> SCALE_OFFSET
        squared = (squared * squared) >> SCALE_OFFSET
    if result == 0:
        raise ValueError(f"bin id {exponent} underflows the Q64.64 price")
    if invert:
        result = U128_MAX // result
    return result


@lru_cache(maxsize=65_536)
def bin_price_q64(bin_id: int, bin_step: int) -> int:
    """The program's Q64.64 price of a bin (price_math.rs get_price_from_id).

    base = 1 + floor((bin_step << 64) / 10_000), then `_pow_q64(base, bin_id)`.
    """
    base = ONE_Q64 + (bin_step << SCALE_OFFSET) // BASIS_POINT_MAX
    return _pow_q64(base, bin_id)


def bin_price(bin_id: int, bin_step: int) -> Fraction:
    """A bin's price (Y base units per X base unit) as the exact value of its Q64.64 form."""
    return Fraction(bin_price_q64(bin_id, bin_step), ONE_Q64)


# --- fee rates (lb_pair get_base_fee / compute_variable_fee / get_total_fee) ---------------

@dataclass(frozen=True, slots=True)
class DlmmParams:
    """A pair's static parameters. Defaults other than bin_step and base_factor are the
    program's preset for bin step 10 (constants.rs get_preset), with no protocol share."""

    bin_step: int
    base_factor: int
    filter_period: int = 30
    decay_period: int = 600
    reduction_factor: int = 5_000
    variable_fee_control: int = 40_000
    max_volatility_accumulator: int = 350_000
    protocol_share: int = 0  # bps of the fee that goes to the protocol
    base_fee_power_factor: int = 0  # newer program versions: base fee * 10^power

    def __post_init__(self) -> None:
        if not 1 <= self.bin_step <= BASIS_POINT_MAX:
            raise ValueError("bin_step must be within 1..10000 bps")
        if min(self.base_factor, self.filter_period, self.decay_period,
               self.reduction_factor, self.variable_fee_control,
               self.max_volatility_accumulator, self.protocol_share,
               self.base_fee_power_factor) < 0:
            raise ValueError("DLMM parameters must not be negative")
        if self.filter_period > self.decay_period:
            raise ValueError("filter_period must not exceed decay_period")
        if self.reduction_factor > BASIS_POINT_MAX:
            raise ValueError("reduction_factor must be within 0..10000 bps")
        if self.protocol_share > MAX_PROTOCOL_SHARE:
            raise ValueError(f"protocol_share must be within 0..{MAX_PROTOCOL_SHARE} bps")


def base_fee_rate(params: DlmmParams) -> int:
    """base_factor * bin_step * 10 * 10^power, in 1e-9 (base_factor 10_000, step 10: 0.1%)."""
    power: int = 10**params.base_fee_power_factor
    return params.base_factor * params.bin_step * 10 * power


def variable_fee_rate(params: DlmmParams, volatility_accumulator: int) -> int:
    """ceil(variable_fee_control * (va * bin_step)^2 / 1e11), in 1e-9."""
    if params.variable_fee_control <= 0:
        return 0
    squared = (volatility_accumulator * params.bin_step) ** 2
    return -(-params.variable_fee_control * squared // _VARIABLE_FEE_SCALE)


def total_fee_rate(params: DlmmParams, volatility_accumulator: int) -> int:
    """min(base + variable, MAX_FEE_RATE), in 1e-9."""
    return min(base_fee_rate(params) + variable_fee_rate(params, volatility_accumulator),
               MAX_FEE_RATE)


def _fee_on_top(amount: int, rate: int) -> int:
    """The fee to add to `amount` so that the fee is `rate` of the sum (lb_pair compute_fee):
    ceil(amount * rate / (1e9 - rate))."""
    return -(-amount * rate // (FEE_PRECISION - rate))


def _fee_included(amount_with_fee: int, rate: int) -> int:
    """The fee inside an amount that includes it (compute_fee_from_amount):
    ceil(amount * rate / 1e9)."""
    return -(-amount_with_fee * rate // FEE_PRECISION)


def _protocol_part(fee: int, protocol_share: int) -> int:
    """floor(fee * protocol_share / 10_000) (compute_protocol_fee)."""
    return fee * protocol_share // BASIS_POINT_MAX


# --- volatility (parameters.rs update_references / update_volatility_accumulator) ----------

def _references_at(pool: DlmmPool, now_ts: int) -> tuple[int, int]:
    """(volatility_reference, index_reference) once a swap at `now_ts` has started.

    Within the filter period (high-frequency trading) both stay; after it the index
    reference moves to the active bin and the reference decays to va * reduction / 10_000;
    after the decay period it resets to 0. A clock that went backwards counts as within
    the filter period, as in the program.
    """
    params = pool.params
    elapsed = now_ts - pool.last_update_timestamp
    if elapsed < params.filter_period:
        return pool.volatility_reference, pool.index_reference
    if elapsed < params.decay_period:
        decayed = pool.volatility_accumulator * params.reduction_factor // BASIS_POINT_MAX
        return decayed, pool.active_id
    return 0, pool.active_id


def _volatility_accumulator(
    params: DlmmParams, volatility_reference: int, index_reference: int, active_id: int
) -> int:
    """min(reference + |index_reference - active_id| * 10_000, max_volatility_accumulator)."""
    crossed = abs(index_reference - active_id)
    return min(volatility_reference + crossed * BASIS_POINT_MAX,
               params.max_volatility_accumulator)


# --- the pool --------------------------------------------------------------------------

class Bin(NamedTuple):
    bin_id: int
    amount_x: int
    amount_y: int


def bins_from_mapping(amounts: Mapping[int, tuple[int, int]]) -> tuple[Bin, ...]:
    """The pool's bin representation of {bin_id: (amount_x, amount_y)}."""
    return tuple(Bin(bin_id, x, y) for bin_id, (x, y) in sorted(amounts.items()))


@dataclass(frozen=True, slots=True)
class DlmmPool:
    """A DLMM pair's state.

    `bins` is a tuple of `Bin(bin_id, amount_x, amount_y)` sorted by strictly increasing
    bin_id; a bin that is not listed is empty. Bin amounts exclude fees, as the program's do.
    `fee_x`/`fee_y` are the swap fees accrued to liquidity providers and
    `protocol_fee_x`/`protocol_fee_y` the protocol's part, all held by the pool's vaults
    outside the bins (so reserve_x = bins' X + fee_x + protocol_fee_x).
    """

    pool_id: str
    mint_x: str
    mint_y: str
    params: DlmmParams
    active_id: int
    bins: tuple[Bin, ...]
    volatility_accumulator: int = 0
    volatility_reference: int = 0
    index_reference: int = 0
    last_update_timestamp: int = 0
    fee_x: int = 0
    fee_y: int = 0
    protocol_fee_x: int = 0
    protocol_fee_y: int = 0

    def __post_init__(self) -> None:
        if self.mint_x == self.mint_y:
            raise ValueError("a DLMM pair needs two different mints")
        previous: int | None = None
        for bin_ in self.bins:
            if previous is not None and bin_.bin_id <= previous:
                raise ValueError("bins must be sorted by strictly increasing bin_id")
            if bin_.amount_x < 0 or bin_.amount_y < 0:
                raise ValueError(f"bin {bin_.bin_id} has a negative amount")
            previous = bin_.bin_id
        if self.bins and (self.bins[0].bin_id < MIN_BIN_ID
                          or self.bins[-1].bin_id > MAX_BIN_ID):
            raise ValueError(f"bin ids must be within {MIN_BIN_ID}..{MAX_BIN_ID}")
        if min(self.fee_x, self.fee_y, self.protocol_fee_x, self.protocol_fee_y,
               self.volatility_accumulator, self.volatility_reference) < 0:
            raise ValueError("accrued fees and volatility must not be negative")

    def has_mint(self, mint: str) -> bool:
        return mint in (self.mint_x, self.mint_y)

    @property
    def reserve_x(self) -> int:
        """All the X the pool's vault holds: the bins' X plus accrued fees in X."""
        return sum(b.amount_x for b in self.bins) + self.fee_x + self.protocol_fee_x

    @property
    def reserve_y(self) -> int:
        return sum(b.amount_y for b in self.bins) + self.fee_y + self.protocol_fee_y

    def price_of_bin(self, bin_id: int) -> Fraction:
        return bin_price(bin_id, self.params.bin_step)

    def bin_amounts(self, bin_id: int) -> tuple[int, int]:
        """(amount_x, amount_y) of a bin; (0, 0) for a bin that holds nothing."""
        position = bisect_left(self.bins, bin_id, key=_bin_id_of)
        if position < len(self.bins) and self.bins[position].bin_id == bin_id:
            found = self.bins[position]
            return found.amount_x, found.amount_y
        return 0, 0

    def swaps_for_y(self, input_mint: str) -> bool:
        """True when `input_mint` is X (the swap pays out Y)."""
        if input_mint == self.mint_x:
            return True
        if input_mint == self.mint_y:
            return False
        raise InvalidPairError(f"pool {self.pool_id} does not hold {input_mint}")


def _bin_id_of(bin_: Bin) -> int:
    return bin_.bin_id


def _positions_from_active(pool: DlmmPool, swap_for_y: bool) -> range:
    """Positions in `pool.bins` a swap visits, in order: the active bin, then away from it."""
    if swap_for_y:
        start = bisect_right(pool.bins, pool.active_id, key=_bin_id_of) - 1
        return range(start, -1, -1)
    return range(bisect_left(pool.bins, pool.active_id, key=_bin_id_of), len(pool.bins))


# --- one bin (bin.rs Bin::swap) --------------------------------------------------------

class _BinFill(NamedTuple):
    amount_in: int  # fee included
    amount_out: int
    fee: int
    protocol_fee: int
    bin_after: Bin


def _max_amount_in(bin_: Bin, price_q64: int, swap_for_y: bool) -> int:
    """The input (before fee) that takes all of the bin's output token, rounded up:
    ceil(y / price) selling X, ceil(x * price) selling Y."""
    if swap_for_y:
        return _mul_div(bin_.amount_y, ONE_Q64, price_q64, round_up=True)
    return _mul_div(bin_.amount_x, price_q64, ONE_Q64, round_up=True)


def _amount_out(amount_in: int, price_q64: int, swap_for_y: bool) -> int:
    """The output for an input after fee, rounded down: x * price or y / price."""
    if swap_for_y:
        return _mul_div(amount_in, price_q64, ONE_Q64, round_up=False)
    return _mul_div(amount_in, ONE_Q64, price_q64, round_up=False)


def _swap_in_bin(
    bin_: Bin, amount_left: int, price_q64: int, fee_rate: int, protocol_share: int,
    swap_for_y: bool,
) -> _BinFill:
    """Swap up to `amount_left` (fee included) inside one bin, as Bin::swap does.

    If the amount is more than the bin can take (its max input plus the fee on top of that),
    the bin is emptied of the output token for exactly that much; otherwise all of it goes
    in, the fee being ceil(amount * rate / 1e9) of it, and the output is capped at what the
    bin holds. The fee stays outside the bin.
    """
    available = bin_.amount_y if swap_for_y else bin_.amount_x
    max_in = _max_amount_in(bin_, price_q64, swap_for_y)
    max_fee = _fee_on_top(max_in, fee_rate)
    if amount_left > max_in + max_fee:
        used, out, fee = max_in + max_fee, available, max_fee
    else:
        used = amount_left
        fee = _fee_included(amount_left, fee_rate)
        out = min(_amount_out(amount_left - fee, price_q64, swap_for_y), available)
    into_bin = used - fee
    if swap_for_y:
        after = Bin(bin_.bin_id, bin_.amount_x + into_bin, bin_.amount_y - out)
    else:
        after = Bin(bin_.bin_id, bin_.amount_x - out, bin_.amount_y + into_bin)
    return _BinFill(used, out, fee, _protocol_part(fee, protocol_share), after)


# --- the swap --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DlmmSwapResult:
    amount_in: int
    amount_out: int
    fee: int  # total fee, in the input token (protocol part included)
    protocol_fee: int
    bins_crossed: int  # how far the active bin moved
    new_pool: DlmmPool


class _Visit(NamedTuple):
    position: int
    bin_id: int
    volatility_accumulator: int


def _visits(pool: DlmmPool, swap_for_y: bool, now_ts: int) -> Iterator[_Visit]:
    """The bins a swap starting at `now_ts` visits, each with the volatility accumulator the
    program has when it swaps in that bin (references updated once at the start, the
    accumulator again at every bin). Empty bins in between change nothing: the accumulator
    depends only on the distance from the index reference."""
    reference, index_reference = _references_at(pool, now_ts)
    for position in _positions_from_active(pool, swap_for_y):
        bin_id = pool.bins[position].bin_id
        yield _Visit(position, bin_id,
                     _volatility_accumulator(pool.params, reference, index_reference, bin_id))


@dataclass(slots=True)
class _Walk:
    amount_left: int
    amount_out: int = 0
    fee: int = 0
    protocol_fee: int = 0
    last_visit: _Visit | None = None


def _walk(pool: DlmmPool, swap_for_y: bool, amount_in: int, now_ts: int,
          new_bins: list[Bin] | None) -> _Walk:
    """Spend `amount_in` bin by bin; record the bins' new amounts in `new_bins` if given."""
    walk = _Walk(amount_left=amount_in)
    params = pool.params
    for visit in _visits(pool, swap_for_y, now_ts):
        if walk.amount_left == 0:
            break
        walk.last_visit = visit
        bin_ = pool.bins[visit.position]
        if (bin_.amount_y if swap_for_y else bin_.amount_x) == 0:
            continue
        fill = _swap_in_bin(
            bin_, walk.amount_left, bin_price_q64(bin_.bin_id, params.bin_step),
            total_fee_rate(params, visit.volatility_accumulator), params.protocol_share,
            swap_for_y,
        )
        walk.amount_left -= fill.amount_in
        walk.amount_out += fill.amount_out
        walk.fee += fill.fee
        walk.protocol_fee += fill.protocol_fee
        if new_bins is not None:
            new_bins[visit.position] = fill.bin_after
    return walk


def _checked_walk(pool: DlmmPool, input_mint: str, amount_in: int, now_ts: int,
                  new_bins: list[Bin] | None) -> tuple[bool, _Walk]:
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    swap_for_y = pool.swaps_for_y(input_mint)
    walk = _walk(pool, swap_for_y, amount_in, now_ts, new_bins)
    # The program fails when it runs out of bins (the SDK's quote too, unless asked for a
    # partial fill); a partial fill is insufficient liquidity for us either way.
    if walk.amount_left > 0:
        raise InsufficientLiquidityError(
            f"pool {pool.pool_id}: its bins cannot absorb {amount_in} of {input_mint}"
        )
    # The program would take the input for nothing; refuse, as the constant-product math does.
    if walk.amount_out <= 0:
        raise InsufficientLiquidityError(
            f"pool {pool.pool_id}: amount too small to receive any output"
        )
    return swap_for_y, walk


def swap_exact_in(pool: DlmmPool, input_mint: str, amount_in: int, now_ts: int) -> DlmmSwapResult:
    """Swap exactly `amount_in` at time `now_ts` (unix seconds), as the program would."""
    new_bins = list(pool.bins)
    swap_for_y, walk = _checked_walk(pool, input_mint, amount_in, now_ts, new_bins)
    assert walk.last_visit is not None  # output > 0, so some bin was visited
    reference, index_reference = _references_at(pool, now_ts)
    lp_fee = walk.fee - walk.protocol_fee
    new_pool = replace(
        pool,
        bins=tuple(new_bins),
        active_id=walk.last_visit.bin_id,
        volatility_accumulator=walk.last_visit.volatility_accumulator,
        volatility_reference=reference,
        index_reference=index_reference,
        last_update_timestamp=now_ts,
        fee_x=pool.fee_x + (lp_fee if swap_for_y else 0),
        fee_y=pool.fee_y + (0 if swap_for_y else lp_fee),
        protocol_fee_x=pool.protocol_fee_x + (walk.protocol_fee if swap_for_y else 0),
        protocol_fee_y=pool.protocol_fee_y + (0 if swap_for_y else walk.protocol_fee),
    )
    return DlmmSwapResult(
        amount_in=amount_in,
        amount_out=walk.amount_out,
        fee=walk.fee,
        protocol_fee=walk.protocol_fee,
        bins_crossed=abs(new_pool.active_id - pool.active_id),
        new_pool=new_pool,
    )


def quote_exact_in(pool: DlmmPool, input_mint: str, amount_in: int, now_ts: int) -> int:
    """The output of `swap_exact_in`, without building the pool after the swap."""
    return _checked_walk(pool, input_mint, amount_in, now_ts, None)[1].amount_out


def fee_rate_now(pool: DlmmPool, now_ts: int) -> int:
    """The total fee rate (1e-9 units) a swap starting at `now_ts` pays in the active bin."""
    reference, index_reference = _references_at(pool, now_ts)
    accumulator = _volatility_accumulator(pool.params, reference, index_reference,
                                          pool.active_id)
    return total_fee_rate(pool.params, accumulator)


@dataclass(frozen=True, slots=True)
class BinStep:
    """Emptying one bin: the input it takes (fee included), the output, and the fee."""

    bin_id: int
    amount_in: int
    amount_out: int
    fee: int


def bin_ladder(pool: DlmmPool, input_mint: str, now_ts: int) -> tuple[BinStep, ...]:
    """What each successive bin gives when a swap at `now_ts` empties it, in swap order:
    the exact prices and fees a large swap meets (the router's piecewise curve)."""
    return tuple(ladder_steps(pool, input_mint, now_ts))


def ladder_steps(pool: DlmmPool, input_mint: str, now_ts: int) -> Iterator[BinStep]:
    """`bin_ladder` one bin at a time: the first step alone is the rate at the margin."""
    swap_for_y = pool.swaps_for_y(input_mint)
    params = pool.params
    for visit in _visits(pool, swap_for_y, now_ts):
        bin_ = pool.bins[visit.position]
        if (bin_.amount_y if swap_for_y else bin_.amount_x) == 0:
            continue
        price_q64 = bin_price_q64(bin_.bin_id, params.bin_step)
        rate = total_fee_rate(params, visit.volatility_accumulator)
        max_in = _max_amount_in(bin_, price_q64, swap_for_y)
        # More than the bin can take, so the fill is the whole bin.
        fill = _swap_in_bin(bin_, max_in + _fee_on_top(max_in, rate) + 1, price_q64, rate,
                            params.protocol_share, swap_for_y)
        yield BinStep(bin_.bin_id, fill.amount_in, fill.amount_out, fill.fee)


def spot_price(pool: DlmmPool, input_mint: str) -> Fraction:
    """Output per unit of input before fees at the first bin the swap would trade in (the
    active bin, or the next one that holds the output token)."""
    swap_for_y = pool.swaps_for_y(input_mint)
    for position in _positions_from_active(pool, swap_for_y):
        bin_ = pool.bins[position]
        if (bin_.amount_y if swap_for_y else bin_.amount_x) > 0:
            price = pool.price_of_bin(bin_.bin_id)
            return price if swap_for_y else 1 / price
    raise InsufficientLiquidityError(f"pool {pool.pool_id} holds nothing to pay out")


# --- building a pool -------------------------------------------------------------------

def nearest_bin_id(price: Fraction | Decimal, bin_step: int) -> int:
    """The bin whose (Q64.64) price is nearest `price`, by ratio."""
    target = Fraction(price)
    if target <= 0:
        raise ValueError("price must be positive")
    log_target = math.log(target.numerator) - math.log(target.denominator)
    guess = round(log_target / math.log1p(bin_step / BASIS_POINT_MAX))
    guess = max(MIN_BIN_ID, min(MAX_BIN_ID, guess))

    def distance(bin_id: int) -> Fraction:
        bin_value = bin_price(bin_id, bin_step)
        return bin_value / target if bin_value >= target else target / bin_value

    # The float guess is within a bin or two; settle it exactly.
    best = guess
    for direction in (1, -1):
        while MIN_BIN_ID <= best + direction <= MAX_BIN_ID and (
            distance(best + direction) < distance(best)
        ):
            best += direction
    return best


def _shape_weights(shape: str, bins_each_side: int) -> list[int]:
    """Relative liquidity at distance 0..bins_each_side from the active bin."""
    distances = range(bins_each_side + 1)
    if shape == "spot":
        return [1 for _ in distances]
    if shape == "curve":
        return [bins_each_side + 1 - d for d in distances]
    if shape == "bid_ask":
        return [d + 1 for d in distances]
    raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")


def _spread(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, floored, remainder on the first (active)."""
    weight_sum = sum(weights)
    shares = [total * w // weight_sum for w in weights]
    shares[0] += total - sum(shares)
    return shares


def make_pool(
    pool_id: str,
    mint_x: str,
    mint_y: str,
    params: DlmmParams,
    price: Fraction | Decimal,
    total_x: int,
    total_y: int,
    shape: str = "spot",
    bins_each_side: int = 35,
    now_ts: int = 0,
) -> DlmmPool:
    """A pool at `price` (Y base units per X base unit) with exactly total_x / total_y in it.

    The active bin is the one nearest the price and holds some of both tokens; X goes in the
    `bins_each_side` bins above it, Y in those below, by shape: spot = the same in every bin,
    curve = most near the active bin, falling linearly, bid_ask = least near it, rising.
    The active bin carries half a bin's weight on each side (it holds both tokens) plus the
    rounding remainders.
    """
    if total_x < 0 or total_y < 0:
        raise ValueError("totals must not be negative")
    if bins_each_side < 0:
        raise ValueError("bins_each_side must not be negative")
    active_id = nearest_bin_id(price, params.bin_step)
    lowest, highest = active_id - bins_each_side, active_id + bins_each_side
    if lowest < MIN_BIN_ID or highest > MAX_BIN_ID:
        raise ValueError("the bins would leave the supported price range")
    for edge in (lowest, highest):
        bin_price_q64(edge, params.bin_step)  # raises if the program could not price it
    weights = _shape_weights(shape, bins_each_side)
    # Half weight on the active bin, which shares its liquidity between the two sides.
    side_weights = [weights[0]] + [2 * w for w in weights[1:]]
    x_by_distance = _spread(total_x, side_weights)
    y_by_distance = _spread(total_y, side_weights)
    amounts: dict[int, tuple[int, int]] = {}
    for distance in range(bins_each_side + 1):
        above, below = active_id + distance, active_id - distance
        if distance == 0:
            amounts[active_id] = (x_by_distance[0], y_by_distance[0])
            continue
        amounts[above] = (x_by_distance[distance], 0)
        amounts[below] = (0, y_by_distance[distance])
    return DlmmPool(
        pool_id=pool_id,
        mint_x=mint_x,
        mint_y=mint_y,
        params=params,
        active_id=active_id,
        bins=tuple(b for b in bins_from_mapping(amounts) if b.amount_x or b.amount_y),
        index_reference=active_id,
        last_update_timestamp=now_ts,
    )
