"""Pools as the router sees them: exact quotes plus a curve to allocate with."""

from __future__ import annotations

from dataclasses import dataclass

from order_engine.domain.amm import PoolState, Venue, swap_exact_in
from order_engine.domain.router import Curve, MobiusCurve


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
