"""Pools as the router sees them: exact quotes plus a curve to allocate with."""

from __future__ import annotations

from dataclasses import dataclass, field

from order_engine.domain import dlmm
from order_engine.domain.amm import PoolState, Venue, swap_exact_in
from order_engine.domain.router import Curve, MobiusCurve, PiecewiseCurve


@dataclass(frozen=True, slots=True)
class ConstantProductPool:
    """A Raydium (or Meteora dynamic AMM) constant-product pool."""

    state: PoolState

    @property
    def pool_id(self) -> str:
        return self.state.pool_id

    @property
    def venue(self) -> Venue:
        return self.state.venue

    @property
    def mints(self) -> tuple[str, str]:
        return self.state.mint_a, self.state.mint_b

    def quote(self, input_mint: str, amount_in: int) -> int:
        return swap_exact_in(self.state, input_mint, amount_in).amount_out

    def fee(self, input_mint: str, amount_in: int) -> int:
        return swap_exact_in(self.state, input_mint, amount_in).fee

    def curve(self, input_mint: str) -> Curve:
        # out = R_out * g*a / (R_in + g*a) = R_out * a / (R_in/g + a), g = 1 - fee.
        reserve_in, reserve_out = self.state.reserves_for(input_mint)
        keep = 1 - self.state.fee_numerator / self.state.fee_denominator
        return MobiusCurve(float(reserve_out), reserve_in / keep)

    def initial_rate(self, input_mint: str) -> float:
        return self.curve(input_mint).marginal(0.0)


@dataclass(frozen=True)
class DlmmRoutablePool:
    """A Meteora DLMM pool, at the moment `now_ts` (its variable fee depends on time)."""

    state: dlmm.DlmmPool
    now_ts: int
    venue: Venue = Venue.METEORA
    # A bin ladder is a walk over every bin: computed once per direction.
    _curves: dict[str, Curve] = field(default_factory=dict, compare=False, hash=False,
                                      repr=False)

    @property
    def pool_id(self) -> str:
        return self.state.pool_id

    @property
    def mints(self) -> tuple[str, str]:
        return self.state.mint_x, self.state.mint_y

    def quote(self, input_mint: str, amount_in: int) -> int:
        return dlmm.quote_exact_in(self.state, input_mint, amount_in, self.now_ts)

    def fee(self, input_mint: str, amount_in: int) -> int:
        return dlmm.swap_exact_in(self.state, input_mint, amount_in, self.now_ts).fee

    def curve(self, input_mint: str) -> Curve:
        # Each bin, emptied in turn: its input (fee included) at its rate (fee included).
        if input_mint not in self._curves:
            ladder = dlmm.bin_ladder(self.state, input_mint, self.now_ts)
            self._curves[input_mint] = PiecewiseCurve(tuple(
                (float(step.amount_in), step.amount_out / step.amount_in)
                for step in ladder if step.amount_in > 0
            ))
        return self._curves[input_mint]

    def initial_rate(self, input_mint: str) -> float:
        # The first bin's rate: no need to walk the whole ladder for it.
        if input_mint in self._curves:
            return self._curves[input_mint].marginal(0.0)
        for step in dlmm.ladder_steps(self.state, input_mint, self.now_ts):
            if step.amount_in > 0:
                return step.amount_out / step.amount_in
        return 0.0
