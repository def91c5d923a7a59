"""The venues as a router sees them: quote a pair, build the swap instruction."""

from __future__ import annotations

import asyncio
import random

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from order_engine.domain.amm import Venue, swap_exact_in
from order_engine.domain.errors import (
    ExecutionError,
    InsufficientLiquidityError,
    NoRouteError,
    VenueTimeoutError,
)
from order_engine.domain.routing import VenueQuote
from order_engine.domain.tokens import token_by_mint
from order_engine.market.chain import SimulatedChain
from order_engine.market.programs import SwapInstruction, pool_address


class SimulatedVenue:
    """A venue's quote API over the simulated chain's pools (~200 ms per quote at scale 1)."""

    def __init__(self, venue: Venue, chain: SimulatedChain, rng: random.Random) -> None:
        self.venue = venue
        self._chain = chain
        self._rng = rng

    async def quote(self, input_mint: str, output_mint: str, amount_in: int) -> VenueQuote | None:
        scale = self._chain.latency_scale
        if scale > 0:
            await asyncio.sleep(self._rng.uniform(0.15, 0.25) * scale)
        pools = [
            p for p in await self._chain.get_pools(input_mint, output_mint)
            if p.venue is self.venue
        ]
        if not pools:
            return None
        best: VenueQuote | None = None
        for pool in pools:
            result = swap_exact_in(pool, input_mint, amount_in)
            if best is None or result.amount_out > best.amount_out:
                best = VenueQuote(
                    venue=self.venue,
                    pool_id=pool.pool_id,
                    input_mint=input_mint,
                    output_mint=output_mint,
                    amount_in=amount_in,
                    amount_out=result.amount_out,
                    fee=result.fee,
                )
        return best

    def swap_instruction(self, quote: VenueQuote, min_amount_out: int, owner: Pubkey) -> (
        Instruction
    ):
        return SwapInstruction(
            venue=self.venue,
            pool=pool_address(self.venue, quote.pool_id),
            input_mint=Pubkey.from_string(quote.input_mint),
            output_mint=Pubkey.from_string(quote.output_mint),
            owner=owner,
            amount_in=quote.amount_in,
            min_amount_out=min_amount_out,
        ).to_instruction()


async def quote_all(
    venues: list[SimulatedVenue],
    input_mint: str,
    output_mint: str,
    amount_in: int,
    timeout_s: float,
) -> list[VenueQuote]:
    """Ask every venue at once; a venue that times out or cannot fill is left out.

    Raises when none can quote: VenueTimeoutError (transient) if any timed out, else
    InsufficientLiquidityError or NoRouteError (permanent).
    """
    async def ask(venue: SimulatedVenue) -> VenueQuote | ExecutionError | None:
        try:
            return await asyncio.wait_for(
                venue.quote(input_mint, output_mint, amount_in), timeout_s
            )
        except TimeoutError:
            return VenueTimeoutError(f"{venue.venue.value} did not quote within {timeout_s}s")
        except InsufficientLiquidityError as exc:
            return exc

    answers = await asyncio.gather(*(ask(v) for v in venues))
    quotes = [a for a in answers if isinstance(a, VenueQuote)]
    if quotes:
        return quotes
    errors = [a for a in answers if isinstance(a, ExecutionError)]
    for error in errors:
        if error.transient:
            raise error
    if errors:
        raise errors[0]
    pair = f"{token_by_mint(input_mint).symbol}/{token_by_mint(output_mint).symbol}"
    raise NoRouteError(f"no venue has a pool for {pair} (routes through other tokens "
                       "are not supported yet)")


def venues_for(chain: SimulatedChain, rng: random.Random) -> list[SimulatedVenue]:
    return [SimulatedVenue(venue, chain, rng) for venue in Venue]
