"""The venues as the router sees them: each serves the state of its pools (as an RPC node
or a venue's API would), with latency, and may time out."""

from __future__ import annotations

import asyncio
import random
import time

from order_engine import metrics
from order_engine.domain.amm import Venue
from order_engine.domain.errors import VenueTimeoutError
from order_engine.market.chain import SimulatedChain
from order_engine.market.pool_codec import AnyPool


class SimulatedVenue:
    """A venue's pool feed over the simulated chain (~200 ms per request at scale 1)."""

    def __init__(self, venue: Venue, chain: SimulatedChain, rng: random.Random) -> None:
        self.venue = venue
        self._chain = chain
        self._rng = rng

    async def pools(self) -> list[AnyPool]:
        scale = self._chain.latency_scale
        if scale > 0:
            await asyncio.sleep(self._rng.uniform(0.15, 0.25) * scale)
        return await self._chain.get_pools(venue=self.venue)


async def fetch_pools(venues: list[SimulatedVenue], timeout_s: float) -> list[AnyPool]:
    """Every venue's pools, asked at once; a venue that does not answer in time is left
    out. VenueTimeoutError (transient) only if none answers."""

    async def ask(venue: SimulatedVenue) -> list[AnyPool] | None:
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(venue.pools(), timeout_s)
        except TimeoutError:
            return None
        finally:
            metrics.VENUE_SECONDS.labels(venue.venue.value).observe(
                time.perf_counter() - started)

    answers = await asyncio.gather(*(ask(v) for v in venues))
    if all(answer is None for answer in answers):
        raise VenueTimeoutError(f"no venue answered within {timeout_s}s")
    return [pool for answer in answers if answer is not None for pool in answer]


def venues_for(chain: SimulatedChain, rng: random.Random) -> list[SimulatedVenue]:
    return [SimulatedVenue(venue, chain, rng) for venue in Venue]
