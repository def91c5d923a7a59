"""The router: the split across pools and paths of up to three hops that maximises output.

Each candidate path (one pool, two pools through an intermediate token, or three pools
through two of them) has a concave output curve f(a). The best split of an amount A gives
every used path the same marginal output f'(a) = lambda; we find lambda by bisection,
using each curve's allocation at a given lambda (closed form for constant-product pools
and chains of them, a walk over bins for DLMM, bisection for mixed chains), then settle
the integer amounts with exact quotes and a short hill climb. Each hop costs something to
execute (compute); a path whose extra output does not cover its hops' cost is dropped.

Paths are chosen pool-disjoint (the best first), so their curves are independent.
Three-hop paths are only considered when they could carry part of the best route (see
`_could_beat_shorter`): an order that a shorter path serves best does not quote or split
over them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from order_engine.domain.amm import Venue
from order_engine.domain.errors import InsufficientLiquidityError, NoRouteError

# The liquid tokens a route may pass through (SOL, USDC, USDT): one of them on a two-hop
# path, two different ones on a three-hop path.
INTERMEDIATE_MINTS: tuple[str, ...] = (
    "So11111111111111111111111111111111111111112",
    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
    "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",
)
MAX_PATHS = 6
MAX_HOPS = 3
BISECTION_STEPS = 40


class Curve(Protocol):
    """A continuous approximation of a path's output, for allocating an amount."""

    def output(self, amount: float) -> float: ...

    def marginal(self, amount: float) -> float: ...

    def allocation(self, rate: float, cap: float) -> float:
        """The largest amount (<= cap) at which the marginal output is still >= rate."""
        ...


@dataclass(frozen=True, slots=True)
class MobiusCurve:
    """f(a) = A*a / (B + a): a constant-product pool (A = R_out, B = R_in / (1 - fee)),
    and any chain of them, which is again of this form."""

    a: float
    b: float

    def output(self, amount: float) -> float:
        return self.a * amount / (self.b + amount)

    def marginal(self, amount: float) -> float:
        return self.a * self.b / (self.b + amount) ** 2

    def allocation(self, rate: float, cap: float) -> float:
        if rate <= 0:
            return cap
        return min(cap, max(0.0, math.sqrt(self.a * self.b / rate) - self.b))

    def then(self, other: MobiusCurve) -> MobiusCurve:
        """This curve followed by `other` (the output of this feeds the other)."""
        denominator = self.a + other.b
        return MobiusCurve(self.a * other.a / denominator, self.b * other.b / denominator)


class PiecewiseCurve:
    """Constant rates over consecutive input capacities (DLMM bins, fee included).

    Prefix sums make output and marginal a binary search, not a walk over every bin.
    """

    __slots__ = ("_ends", "_outs", "_rates")

    def __init__(self, steps: Sequence[tuple[float, float]]) -> None:
        ends, outs, rates = [], [], []
        total_in = total_out = 0.0
        for capacity, rate in steps:
            total_in += capacity
            total_out += capacity * rate
            ends.append(total_in)
            outs.append(total_out)
            rates.append(rate)
        self._ends, self._outs, self._rates = ends, outs, rates

    def output(self, amount: float) -> float:
        i = bisect.bisect_right(self._ends, amount)
        if i >= len(self._ends):
            return self._outs[-1] if self._outs else 0.0
        before_in = self._ends[i - 1] if i else 0.0
        before_out = self._outs[i - 1] if i else 0.0
        return before_out + (amount - before_in) * self._rates[i]

    def marginal(self, amount: float) -> float:
        i = bisect.bisect_right(self._ends, amount)
        return self._rates[i] if i < len(self._rates) else 0.0

    def allocation(self, rate: float, cap: float) -> float:
        # Rates fall along the walk: count the bins still paying at least `rate`.
        low, high = 0, len(self._rates)
        while low < high:
            middle = (low + high) // 2
            if self._rates[middle] >= rate:
                low = middle + 1
            else:
                high = middle
        return min(cap, self._ends[low - 1] if low else 0.0)


SAMPLES = 48


def chain_curves(first: Curve, second: Curve, cap: float) -> Curve:
    """`first` then `second` (the output of one feeds the other), over inputs up to `cap`.

    Two constant-product curves chain in closed form; anything else is sampled into a
    piecewise curve (denser near zero, where small orders live). The exact quotes of the
    hill climb correct what the sampling approximates.
    """
    if isinstance(first, MobiusCurve) and isinstance(second, MobiusCurve):
        return first.then(second)
    points = [cap * (k / SAMPLES) ** 2 for k in range(SAMPLES + 1)]
    outputs = [second.output(first.output(x)) for x in points]
    steps = []
    for k in range(SAMPLES):
        width = points[k + 1] - points[k]
        if width > 0:
            steps.append((width, max(0.0, (outputs[k + 1] - outputs[k]) / width)))
    return PiecewiseCurve(steps)


class RoutablePool(Protocol):
    """What the router needs of a pool: its identity, exact quotes, a curve."""

    @property
    def pool_id(self) -> str: ...

    @property
    def venue(self) -> Venue: ...

    @property
    def mints(self) -> tuple[str, str]: ...

    def quote(self, input_mint: str, amount_in: int) -> int:
        """Exact output for `amount_in`; InsufficientLiquidityError if it cannot fill."""
        ...

    def curve(self, input_mint: str) -> Curve: ...

    def initial_rate(self, input_mint: str) -> float:
        """`curve(input_mint).marginal(0)`, without building the whole curve."""
        ...

    def fee(self, input_mint: str, amount_in: int) -> int:
        """The fee this pool takes from `amount_in`, in the input token."""
        ...


@dataclass(frozen=True, slots=True)
class Hop:
    pool: RoutablePool
    input_mint: str
    output_mint: str


@dataclass(frozen=True, slots=True)
class Path:
    hops: tuple[Hop, ...]

    @property
    def pool_ids(self) -> frozenset[str]:
        return frozenset(h.pool.pool_id for h in self.hops)

    @property
    def venues(self) -> frozenset[Venue]:
        return frozenset(h.pool.venue for h in self.hops)

    def curve(self, cap: float) -> Curve:
        """The path's output curve, accurate for inputs up to `cap`."""
        curve = self.hops[0].pool.curve(self.hops[0].input_mint)
        for hop in self.hops[1:]:
            curve = chain_curves(curve, hop.pool.curve(hop.input_mint), cap)
        return curve

    def initial_rate(self) -> float:
        """Output per unit of input at the margin, before any price impact."""
        rate = 1.0
        for hop in self.hops:
            rate *= hop.pool.initial_rate(hop.input_mint)
        return rate

    def amounts(self, amount_in: int) -> list[tuple[int, int]]:
        """(in, out) of each hop for `amount_in`; raises InsufficientLiquidityError."""
        result = []
        amount = amount_in
        for hop in self.hops:
            out = hop.pool.quote(hop.input_mint, amount)
            result.append((amount, out))
            amount = out
        return result

    def quote(self, amount_in: int) -> int:
        if amount_in <= 0:
            return 0
        try:
            return self.amounts(amount_in)[-1][1]
        except InsufficientLiquidityError:
            return -1  # cannot fill: worse than anything that can


@dataclass(frozen=True, slots=True)
class Leg:
    path: Path
    amount_in: int
    hop_amounts: tuple[tuple[int, int], ...]

    @property
    def amount_out(self) -> int:
        return self.hop_amounts[-1][1]


@dataclass(frozen=True, slots=True)
class RoutePlan:
    input_mint: str
    output_mint: str
    amount_in: int
    legs: tuple[Leg, ...]
    amount_out: int
    # The best a single path on a single venue gives, for comparison.
    best_single_venue: tuple[Venue, int] | None
    # (output at the best marginal rate before the trade - output) / that, in percent.
    price_impact_pct: float
    hop_cost_out: int = 0
    paths: tuple[Path, ...] = field(default=())  # every candidate, for comparisons


PoolIndex = dict[frozenset[str], list[RoutablePool]]


def _pools_by_pair(pools: Sequence[RoutablePool]) -> PoolIndex:
    index: PoolIndex = {}
    for pool in pools:
        index.setdefault(frozenset(pool.mints), []).append(pool)
    return index


def _short_paths(by_pair: PoolIndex, input_mint: str, output_mint: str) -> list[Path]:
    """Every direct pool, and every two-hop path through SOL, USDC or USDT."""
    paths = [Path((Hop(p, input_mint, output_mint),))
             for p in by_pair.get(frozenset((input_mint, output_mint)), ())]
    for middle in INTERMEDIATE_MINTS:
        if middle in (input_mint, output_mint):
            continue
        for first in by_pair.get(frozenset((input_mint, middle)), ()):
            for second in by_pair.get(frozenset((middle, output_mint)), ()):
                paths.append(Path((Hop(first, input_mint, middle),
                                   Hop(second, middle, output_mint))))
    return paths


def _three_hop_paths(by_pair: PoolIndex, input_mint: str, output_mint: str) -> list[Path]:
    """Every path through two different intermediates (no pool used twice)."""
    paths = []
    for first_middle in INTERMEDIATE_MINTS:
        if first_middle in (input_mint, output_mint):
            continue
        firsts = by_pair.get(frozenset((input_mint, first_middle)))
        if not firsts:
            continue
        for second_middle in INTERMEDIATE_MINTS:
            if second_middle in (input_mint, output_mint, first_middle):
                continue
            seconds = by_pair.get(frozenset((first_middle, second_middle)))
            thirds = by_pair.get(frozenset((second_middle, output_mint)))
            if not seconds or not thirds:
                continue
            for first in firsts:
                for second in seconds:
                    for third in thirds:
                        if len({first.pool_id, second.pool_id, third.pool_id}) < 3:
                            continue
                        paths.append(Path((Hop(first, input_mint, first_middle),
                                           Hop(second, first_middle, second_middle),
                                           Hop(third, second_middle, output_mint))))
    return paths


def candidate_paths(pools: Sequence[RoutablePool], input_mint: str, output_mint: str,
                    max_hops: int = MAX_HOPS) -> list[Path]:
    """Every direct pool, every two-hop path through SOL, USDC or USDT, and (unless
    `max_hops` < 3) every three-hop path through two of them."""
    by_pair = _pools_by_pair(pools)
    paths = _short_paths(by_pair, input_mint, output_mint)
    if max_hops < 2:
        return [p for p in paths if len(p.hops) == 1]
    if max_hops >= 3:
        paths += _three_hop_paths(by_pair, input_mint, output_mint)
    return paths


class _Quotes:
    """Exact quotes of paths and their rates before any trade, each computed once for a
    plan: ranking, the single best path, the bounds and the comparisons ask again."""

    def __init__(self, amount_in: int) -> None:
        self.amount_in = amount_in
        self._outs: dict[tuple[int, int], int] = {}  # (id(path), amount); paths outlive it
        self._rates: dict[tuple[int, str], float] = {}  # (id(pool), input mint)

    def out(self, path: Path, amount: int | None = None) -> int:
        """`path.quote(amount)` (the plan's amount by default)."""
        amount = self.amount_in if amount is None else amount
        key = (id(path), amount)
        out = self._outs.get(key)
        if out is None:
            out = self._outs[key] = path.quote(amount)
        return out

    def initial_rate(self, path: Path) -> float:
        """`path.initial_rate()`, each pool's rate computed once (paths share pools)."""
        rate = 1.0
        for hop in path.hops:
            key = (id(hop.pool), hop.input_mint)
            hop_rate = self._rates.get(key)
            if hop_rate is None:
                hop_rate = self._rates[key] = hop.pool.initial_rate(hop.input_mint)
            rate *= hop_rate
        return rate


def _marginal_floor(path: Path, quotes: _Quotes) -> float:
    """A lower bound on `path`'s marginal output after the plan's amount (0 if it cannot
    take more): concave, so the slope over the next step is at most the slope where it
    starts; one unit less, for the quotes' rounding down."""
    step = max(1_000, quotes.amount_in // 1_000)
    more = quotes.out(path, quotes.amount_in + step)
    if more < 0:
        return 0.0
    return max(0.0, (more - quotes.out(path) - 1) / step)


def _could_beat_shorter(long: list[Path], short: list[Path], quotes: _Quotes) -> list[Path]:
    """The three-hop paths that could carry part of the best route.

    Outputs are concave with f(0) = 0. Let `best` be the shorter path that gives most for
    all of `amount_in`, and r its marginal output after all of it. In the best split
    (over any set of paths holding `best`) every used path pays the same marginal rate,
    at least r (`best` never needs more than the whole amount); a path whose rate before
    any trade is at most r therefore gets nothing. Alone it gives at most rate * amount
    <= r * amount <= best's output, with more hops to pay. So only a three-hop path with
    an initial rate above r can matter: typically none for an ordinary order, whose best
    pool is still near its initial price after the trade, while an extra hop's fee and
    price gap cost far more.
    """
    if not long:
        return long
    best = max(short, key=quotes.out)
    floor = _marginal_floor(best, quotes)
    return [path for path in long if quotes.initial_rate(path) > floor]


def _disjoint_best(paths: list[Path], quotes: _Quotes) -> list[Path]:
    """The best paths for the whole amount, skipping any that reuses a pool."""
    ranked = sorted(paths, key=quotes.out, reverse=True)
    chosen: list[Path] = []
    used: set[str] = set()
    for path in ranked:
        if path.pool_ids & used:
            continue
        chosen.append(path)
        used |= path.pool_ids
        if len(chosen) == MAX_PATHS:
            break
    return chosen


def _continuous_split(curves: list[Curve], amount: float) -> list[float]:
    """Equalise marginal output: find the rate at which the allocations sum to `amount`."""
    high = max(c.marginal(0.0) for c in curves)
    low = 0.0
    for _ in range(BISECTION_STEPS):
        rate = (low + high) / 2
        if sum(c.allocation(rate, amount) for c in curves) > amount:
            low = rate
        else:
            high = rate
    shares = [c.allocation(high, amount) for c in curves]
    total = sum(shares)
    return [s * amount / total for s in shares] if total > 0 else shares


def _integer_split(shares: list[float], amount: int) -> list[int]:
    ints = [math.floor(s) for s in shares]
    ints[max(range(len(ints)), key=lambda i: shares[i])] += amount - sum(ints)
    return ints


class _Evaluator:
    """Exact values of paths at amounts, remembered (the hill climb asks again and again)."""

    def __init__(self, paths: list[Path], hop_cost: int) -> None:
        self._paths = paths
        self._hop_cost = hop_cost
        self._memo: dict[tuple[int, int], int | None] = {}

    def value(self, index: int, amount: int) -> int | None:
        """Output net of hop costs; None when the path cannot take this amount."""
        if amount <= 0:
            return 0
        key = (index, amount)
        if key not in self._memo:
            path = self._paths[index]
            out = path.quote(amount)
            self._memo[key] = None if out < 0 else out - self._hop_cost * len(path.hops)
        return self._memo[key]

    def total(self, split: list[int]) -> int | None:
        values = [self.value(i, a) for i, a in enumerate(split)]
        return None if any(v is None for v in values) else sum(v or 0 for v in values)


def _hill_climb(evaluator: _Evaluator, split: list[int]) -> list[int]:
    """Move amounts between paths while it helps, with shrinking steps (exact quotes)."""
    amount = sum(split)
    # The continuous split starts us close: coarse steps of 1/512, down to 1/50,000 of the
    # amount (moving that little changes the output by far less than the 0.01% we answer
    # for, since the output is flat at the optimum).
    step = max(1, amount // 512)
    finest = max(1, amount // 50_000)
    while True:
        improved = True
        while improved:
            improved = False
            for i in range(len(split)):
                for j in range(len(split)):
                    if i == j or split[i] < step:
                        continue
                    before_i, before_j = evaluator.value(i, split[i]), evaluator.value(j, split[j])
                    after_i = evaluator.value(i, split[i] - step)
                    after_j = evaluator.value(j, split[j] + step)
                    if after_i is None or after_j is None:
                        continue
                    if before_i is None or before_j is None or (
                        after_i + after_j > before_i + before_j
                    ):
                        split = list(split)
                        split[i] -= step
                        split[j] += step
                        improved = True
        if step <= finest:
            return split
        step = max(finest, step // 4)


def _optimise(paths: list[Path], amount_in: int, hop_cost: int,
              curves: dict[int, Curve]) -> tuple[list[int], int]:
    for path in paths:
        if id(path) not in curves:
            curves[id(path)] = path.curve(float(amount_in))
    shares = _continuous_split([curves[id(p)] for p in paths], float(amount_in))
    evaluator = _Evaluator(paths, hop_cost)
    split = _hill_climb(evaluator, _integer_split(shares, amount_in))
    total = evaluator.total(split)
    return split, -1 if total is None else total


def plan_route(
    pools: Sequence[RoutablePool],
    input_mint: str,
    output_mint: str,
    amount_in: int,
    hop_cost_out: int = 0,
    *,
    split: bool = True,
) -> RoutePlan:
    """The best execution of `amount_in` from `pools`; `hop_cost_out` is what one hop costs
    to execute, in output base units (a path must earn its hops)."""
    if amount_in <= 0:
        raise ValueError("amount_in must be positive")
    by_pair = _pools_by_pair(pools)
    short = _short_paths(by_pair, input_mint, output_mint)
    long = _three_hop_paths(by_pair, input_mint, output_mint)
    if not short and not long:
        raise NoRouteError("no pool or path of up to three hops connects these tokens")
    quotes = _Quotes(amount_in)
    all_paths = short + _could_beat_shorter(long, short, quotes) if short else long
    paths = _disjoint_best(all_paths, quotes) if split else []
    single = max(all_paths, key=lambda p: quotes.out(p) - hop_cost_out * len(p.hops))
    best_split, best_value = [amount_in], quotes.out(single) - hop_cost_out * len(
        single.hops)
    best_paths = [single]
    # Keyed by identity: hashing a path would hash every bin of its DLMM pools.
    curves: dict[int, Curve] = {}
    if len(paths) > 1 and not _split_cannot_help(single, paths, amount_in, quotes):
        # Paths the split leaves (nearly) empty go first; then, one at a time, the path
        # carrying least, while dropping it (and its hops' cost) does not lose output.
        current = list(paths)
        split_now, value_now = _optimise(current, amount_in, hop_cost_out, curves)
        while True:
            if value_now > best_value:
                best_paths, best_split, best_value = list(current), split_now, value_now
            if len(current) <= 2:
                break
            smallest = min(range(len(current)), key=lambda i: split_now[i])
            rest = current[:smallest] + current[smallest + 1:]
            split_rest, value_rest = _optimise(rest, amount_in, hop_cost_out, curves)
            if value_rest < value_now:
                break
            current, split_now, value_now = rest, split_rest, value_rest
    if best_value < 0:
        raise InsufficientLiquidityError("no route can fill this amount")
    legs = tuple(
        Leg(path, amount, tuple(path.amounts(amount)))
        for path, amount in zip(best_paths, best_split, strict=True) if amount > 0
    )
    amount_out = sum(leg.amount_out for leg in legs)
    return RoutePlan(
        input_mint=input_mint,
        output_mint=output_mint,
        amount_in=amount_in,
        legs=legs,
        amount_out=amount_out,
        best_single_venue=_best_single_venue(all_paths, quotes),
        price_impact_pct=_price_impact(all_paths, amount_in, amount_out, quotes),
        hop_cost_out=hop_cost_out,
        paths=tuple(all_paths),
    )


def _best_single_venue(paths: list[Path], quotes: _Quotes) -> tuple[Venue, int] | None:
    best: tuple[Venue, int] | None = None
    for path in paths:
        if len(path.venues) != 1:
            continue
        out = quotes.out(path)
        if out >= 0 and (best is None or out > best[1]):
            best = (next(iter(path.venues)), out)
    return best


def _split_cannot_help(single: Path, paths: list[Path], amount_in: int,
                       quotes: _Quotes | None = None) -> bool:
    """True when all of `amount_in` on `single` is provably best, so the split (the costly
    part of routing) can be skipped: outputs are concave, so if `single`'s rate at the
    margin after the whole amount is still above every other path's rate before any,
    no amount moved elsewhere can earn more than it loses (and a split pays more hops).
    The rate after the amount is bounded below by the exact output of a little more,
    less the unit that rounding may have added (with two equal pools the gain of a split
    can be smaller than that unit over the step)."""
    quotes = quotes or _Quotes(amount_in)
    rate_after = _marginal_floor(single, quotes)
    best_other = max((quotes.initial_rate(p) for p in paths if p is not single),
                     default=0.0)
    return rate_after > best_other * (1 + 1e-9)


def _price_impact(paths: list[Path], amount_in: int, amount_out: int,
                  quotes: _Quotes) -> float:
    """The output lost against the best marginal rate of any candidate path before the
    trade, in percent. Each path's rate is the product of its pools' exact first rates:
    the split's curve of a mixed chain (a DLMM and a constant-product pool) is sampled,
    and its first sample's slope, over 1/2304 of the order, is below the rate at zero by
    as much as a large order moves it: when such a path had the best rate, the impact
    looked smaller than it was (the impact limit compares this figure)."""
    best_rate = max(quotes.initial_rate(p) for p in paths)
    ideal = best_rate * amount_in
    return max(0.0, (ideal - amount_out) / ideal * 100) if ideal > 0 else 0.0



# What executing one more hop costs (compute units at a typical priority fee), in lamports.
HOP_COST_LAMPORTS = 5_000
SOL_MINT = INTERMEDIATE_MINTS[0]


def hop_cost_in(pools: Sequence[RoutablePool], output_mint: str) -> int:
    """HOP_COST_LAMPORTS in the output token, at the best direct SOL price (0 if none)."""
    if output_mint == SOL_MINT:
        return HOP_COST_LAMPORTS
    one_sol = 10**9
    best = 0
    for pool in pools:
        if set(pool.mints) == {SOL_MINT, output_mint}:
            try:
                best = max(best, pool.quote(SOL_MINT, one_sol))
            except InsufficientLiquidityError:
                continue
    return best * HOP_COST_LAMPORTS // one_sol
