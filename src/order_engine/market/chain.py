"""The simulated chain: an RPC-like interface over its own PostgreSQL schema.

A swap is one database transaction: lock the pool, refuse a signature that already
landed, check the blockhash, apply the pool math, record the transaction. So concurrent
swaps from any number of workers serialise on the pool row and none is applied twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from solders.hash import Hash
from solders.transaction import Transaction
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from order_engine.domain.amm import Venue
from order_engine.domain.errors import (
    BlockhashExpiredError,
    InsufficientLiquidityError,
    PermanentError,
    TransactionDroppedError,
)
from order_engine.market import tables
from order_engine.market.config import MarketConfig, load_market_config
from order_engine.market.genesis import genesis_pools
from order_engine.market.pool_codec import (
    AnyPool,
    mints_of,
    pool_from_row,
    pool_row,
    pool_values,
    swap,
    venue_of,
)
from order_engine.market.programs import (
    MEMO_PROGRAM_ID,
    MalformedInstructionError,
    RouteInstruction,
    decode_route,
    pool_address,
)

# Solana: a blockhash is valid for 150 slots of ~400 ms.
BLOCKHASH_VALID_SLOTS = 150
SLOT_SECONDS = 0.4
# With latency off, slots still pass (at a tenth of real speed) so blockhashes still expire.
MIN_LATENCY_SCALE_FOR_SLOTS = 0.1
# The program error Raydium returns when output is below minimum_amount_out.
SLIPPAGE_ERROR = "ExceededSlippage: output below minimum_amount_out"


@dataclass(frozen=True, slots=True)
class LatestBlockhash:
    blockhash: Hash
    last_valid_slot: int


@dataclass(frozen=True, slots=True)
class SignatureStatus:
    signature: str
    slot: int
    err: str | None
    amount_out: int | None
    confirmed: bool


class SimulatedChain:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        latency_scale: float = 1.0,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self.latency_scale = latency_scale
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        self._genesis: tuple[float, str] | None = None
        self._pools: dict[str, tuple[datetime, AnyPool]] = {}  # pool_id -> (updated_at, pool)
        self.slot_seconds = SLOT_SECONDS * max(latency_scale, MIN_LATENCY_SCALE_FOR_SLOTS)

    # --- genesis -------------------------------------------------------------------

    async def ensure_genesis(self, config: MarketConfig | None = None) -> None:
        """Create the genesis row and the configured pools unless they exist (idempotent)."""
        now = datetime.now(UTC)
        pools = genesis_pools(config or load_market_config(), int(now.timestamp()))
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(tables.genesis)
                .values(id=1, started_at=now, seed=hashlib.sha256(str(now).encode()).hexdigest())
                .on_conflict_do_nothing()
            )
            for pool in pools:
                values = pool_row(pool)
                await conn.execute(
                    insert(tables.pools)
                    .values(
                        **values,
                        address=str(pool_address(venue_of(pool), pool.pool_id)),
                        genesis_reserve_a=values["reserve_a"],
                        genesis_reserve_b=values["reserve_b"],
                        updated_at=now,
                    )
                    .on_conflict_do_nothing()
                )

    async def _genesis_info(self) -> tuple[float, str]:
        if self._genesis is None:
            async with self._engine.connect() as conn:
                row = (await conn.execute(select(tables.genesis))).one()
            self._genesis = (row.started_at.timestamp(), row.seed)
        return self._genesis

    # --- clock and blockhashes -----------------------------------------------------

    async def current_slot(self) -> int:
        started, _ = await self._genesis_info()
        return int((time.time() - started) / self.slot_seconds)

    async def get_latest_blockhash(self) -> LatestBlockhash:
        slot = await self.current_slot()
        _, seed = await self._genesis_info()
        blockhash = Hash(hashlib.sha256(f"{seed}:{slot}".encode()).digest())
        last_valid = slot + BLOCKHASH_VALID_SLOTS
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(tables.blockhashes)
                .values(blockhash=str(blockhash), slot=slot, last_valid_slot=last_valid)
                .on_conflict_do_nothing()
            )
        return LatestBlockhash(blockhash, last_valid)

    async def is_blockhash_valid(self, last_valid_slot: int) -> bool:
        return await self.current_slot() <= last_valid_slot

    # --- pools ---------------------------------------------------------------------

    async def get_pools(
        self, mint_x: str | None = None, mint_y: str | None = None, *,
        venue: Venue | None = None,
    ) -> list[AnyPool]:
        """Pools (of a pair, of a venue, or all), decoded; unchanged ones from memory."""
        c = tables.pools.c
        stamps = select(c.pool_id, c.updated_at).order_by(c.pool_id)
        if venue is not None:
            stamps = stamps.where(c.venue == venue.value)
        if mint_x is not None and mint_y is not None:
            stamps = stamps.where(
                ((c.mint_a == mint_x) & (c.mint_b == mint_y))
                | ((c.mint_a == mint_y) & (c.mint_b == mint_x))
            )
        async with self._engine.connect() as conn:
            current = (await conn.execute(stamps)).all()
            # Decoding a DLMM pool (every bin) is the costly part: only pools that changed
            # since this process last read them are fetched and decoded again.
            stale = [pool_id for pool_id, updated in current
                     if self._pools.get(pool_id, (None, None))[0] != updated]
            if stale:
                rows = (await conn.execute(select(tables.pools).where(c.pool_id.in_(stale))))
                for row in rows.all():
                    self._pools[row.pool_id] = (row.updated_at, pool_from_row(row._mapping))
        return [self._pools[pool_id][1] for pool_id, _ in current]

    # --- transactions --------------------------------------------------------------

    async def send_transaction(self, raw: bytes) -> str:
        """Execute a signed swap transaction; returns its signature.

        Raises TransactionDroppedError when the (simulated) RPC node does not forward it:
        then it can never land. Sending a signature that already landed is a no-op.
        """
        try:
            tx = Transaction.from_bytes(raw)
            tx.verify()
        except Exception as exc:  # solders raises its own error types for bad bytes
            raise PermanentError(f"invalid transaction: {exc}") from exc
        signature = str(tx.signatures[0])
        await self._sleep(0.02, 0.06)
        if self.failure_rate and self._rng.random() < self.failure_rate:
            raise TransactionDroppedError("transaction dropped: RPC node did not forward it")

        message = tx.message
        keys = list(message.account_keys)
        programs = [keys[ix.program_id_index] for ix in message.instructions]
        memo = " ".join(
            bytes(ix.data).decode("utf-8", "replace")
            for ix, program in zip(message.instructions, programs, strict=True)
            if program == MEMO_PROGRAM_ID
        ) or None
        routes = [ix for ix, program in zip(message.instructions, programs, strict=True)
                  if program != MEMO_PROGRAM_ID]
        if len(routes) != 1:
            raise PermanentError("expected exactly one route instruction (and any memos)")
        ix = routes[0]
        try:
            route = decode_route(
                keys[ix.program_id_index], [keys[i] for i in ix.accounts], bytes(ix.data)
            )
        except MalformedInstructionError as exc:
            raise PermanentError(f"invalid transaction: {exc}") from exc
        if not message.is_signer(keys.index(route.owner)):
            raise PermanentError("invalid transaction: owner did not sign")

        async with self._engine.begin() as conn:
            # Lock every pool of the route, always in the same order (no deadlocks).
            addresses = sorted({str(step.pool) for step in route.steps})
            rows = (
                await conn.execute(
                    select(tables.pools)
                    .where(tables.pools.c.address.in_(addresses))
                    .order_by(tables.pools.c.pool_id)
                    .with_for_update()
                )
            ).all()
            pools = {row.address: pool_from_row(row._mapping) for row in rows}
            if len(pools) != len(addresses):
                raise PermanentError("invalid transaction: a route step names no pool")
            if await self._landed(conn, signature):
                return signature  # already processed: never applied twice
            await self._check_blockhash(conn, str(message.recent_blockhash))
            now = datetime.now(UTC)
            err: str | None = None
            legs: list[dict[str, str]] = []
            amount_out = 0
            try:
                legs, amount_out = _execute_route(route, pools, int(now.timestamp()))
            except InsufficientLiquidityError as exc:
                err = f"InsufficientLiquidity: {exc.message}"
            if err is None and amount_out < route.min_amount_out:
                err = SLIPPAGE_ERROR
            if err is None:
                # Every locked pool is a step of the route: each one changed.
                for after in pools.values():
                    await conn.execute(
                        tables.pools.update()
                        .where(tables.pools.c.pool_id == after.pool_id)
                        .values(**pool_values(after), updated_at=now)
                    )
            else:
                legs = []
            confirm_after = self._rng.uniform(2.0, 3.0) * self.latency_scale
            await conn.execute(
                tables.transactions.insert().values(
                    signature=signature,
                    slot=await self.current_slot(),
                    blockhash=str(message.recent_blockhash),
                    pool_id=next(iter(pools.values())).pool_id,
                    input_mint=str(route.input_mint),
                    # Later hops of a path carry 0: this is what the route spends.
                    amount_in=Decimal(sum(s.amount_in for s in route.steps)),
                    min_amount_out=Decimal(route.min_amount_out),
                    amount_out=None if err else Decimal(amount_out),
                    err=err,
                    memo=memo,
                    legs=legs,
                    landed_at=now,
                    confirmed_at=now + timedelta(seconds=confirm_after),
                )
            )
        return signature

    async def get_signature_status(self, signature: str) -> SignatureStatus | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(tables.transactions).where(
                        tables.transactions.c.signature == signature
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return SignatureStatus(
            signature=signature,
            slot=row.slot,
            err=row.err,
            amount_out=None if row.amount_out is None else int(row.amount_out),
            confirmed=datetime.now(UTC) >= row.confirmed_at,
        )

    async def _landed(self, conn: AsyncConnection, signature: str) -> bool:
        found = await conn.execute(
            select(tables.transactions.c.signature).where(
                tables.transactions.c.signature == signature
            )
        )
        return found.first() is not None

    async def _check_blockhash(self, conn: AsyncConnection, blockhash: str) -> None:
        last_valid = (
            await conn.execute(
                select(tables.blockhashes.c.last_valid_slot).where(
                    tables.blockhashes.c.blockhash == blockhash
                )
            )
        ).scalar_one_or_none()
        if last_valid is None or await self.current_slot() > last_valid:
            raise BlockhashExpiredError("blockhash not found (expired)")

    async def _sleep(self, low: float, high: float) -> None:
        if self.latency_scale > 0:
            await asyncio.sleep(self._rng.uniform(low, high) * self.latency_scale)



def _execute_route(
    route: RouteInstruction, pools: dict[str, AnyPool], now_ts: int
) -> tuple[list[dict[str, str]], int]:
    """Run the route's steps against `pools` (updated in place); returns the legs as
    landed and the output received. Raises PermanentError for a route that does not add
    up, InsufficientLiquidityError when a pool cannot fill."""
    input_mint, output_mint = str(route.input_mint), str(route.output_mint)
    carry: dict[int, tuple[str, int]] = {}  # path -> (mint it holds, amount)
    legs: list[dict[str, str]] = []
    for step in route.steps:
        pool = pools[str(step.pool)]
        mint_a, mint_b = mints_of(pool)
        sells, buys = (mint_a, mint_b) if step.a_to_b else (mint_b, mint_a)
        if step.amount_in:
            if step.path in carry or sells != input_mint:
                raise PermanentError("invalid route: a path must start with the input token")
            amount = step.amount_in
        else:
            held = carry.get(step.path)
            if held is None or held[0] != sells:
                raise PermanentError("invalid route: a hop does not continue its path")
            amount = held[1]
        out, pools[str(step.pool)] = swap(pool, sells, amount, now_ts)
        carry[step.path] = (buys, out)
        legs.append({"pool_id": pool.pool_id, "input_mint": sells, "output_mint": buys,
                     "amount_in": str(amount), "amount_out": str(out)})
    if any(mint != output_mint for mint, _ in carry.values()):
        raise PermanentError("invalid route: a path does not end in the output token")
    return legs, sum(amount for _, amount in carry.values())
