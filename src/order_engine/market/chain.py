"""The simulated chain: an RPC-like interface over its own PostgreSQL schema.

Swaps are applied in blocks: those a process sends while its previous block is being
written go together, in the order they came, in one database transaction that locks
their pools, refuses signatures that already landed and expired blockhashes, applies the
pool math, and records the transactions. So concurrent swaps from any number of workers
serialise on the pool rows and none is applied twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from solders.hash import Hash
from solders.transaction import Transaction
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from order_engine.batching import MicroBatcher
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
from order_engine.store.db import ROW_ERRORS, json_texts

# Solana: a blockhash is valid for 150 slots of ~400 ms.
BLOCKHASH_VALID_SLOTS = 150
SLOT_SECONDS = 0.4
# With latency off, slots still pass (at a tenth of real speed) so blockhashes still expire.
MIN_LATENCY_SCALE_FOR_SLOTS = 0.1
# The program error Raydium returns when output is below minimum_amount_out.
SLIPPAGE_ERROR = "ExceededSlippage: output below minimum_amount_out"
_STATUS_SQL = ("SELECT signature, slot, err, amount_out, confirmed_at FROM chain.transactions "
               "WHERE signature = ANY($1::text[])")


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
    # When it is (or will be) confirmed. A real client learns this from a
    # signatureSubscribe notification; the simulated chain knows it at landing, so a
    # waiter sleeps until then instead of polling the status every 200 ms.
    confirmed_at: datetime


class SimulatedChain:
    def __init__(
        self,
        engine: AsyncEngine,
        pg: asyncpg.Pool,
        *,
        latency_scale: float = 1.0,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._pg = pg
        self._blockhash_slot = -1  # the last slot whose blockhash this process recorded
        self.latency_scale = latency_scale
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        self._genesis: tuple[float, str] | None = None
        self._pools: dict[str, tuple[datetime, AnyPool]] = {}  # pool_id -> (updated_at, pool)
        self.slot_seconds = SLOT_SECONDS * max(latency_scale, MIN_LATENCY_SCALE_FOR_SLOTS)
        self._blocks: MicroBatcher[_PendingSwap, str] = MicroBatcher(
            self._apply_block, key=lambda swap_: swap_.signature)
        self._stamp_reads: MicroBatcher[object, list[asyncpg.Record]] = MicroBatcher(
            self._read_stamps, key=id)
        self._status_reads: MicroBatcher[str, SignatureStatus | None] = MicroBatcher(
            self._read_statuses, key=lambda signature: signature)

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
            row = await self._pg.fetchrow("SELECT started_at, seed FROM chain.genesis")
            assert row is not None, "the chain has no genesis: run `order-engine migrate`"
            self._genesis = (row["started_at"].timestamp(), row["seed"])
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
        if slot != self._blockhash_slot:  # once per slot and process, not per order
            await self._pg.execute(
                "INSERT INTO chain.blockhashes (blockhash, slot, last_valid_slot) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                str(blockhash), slot, last_valid,
            )
            self._blockhash_slot = slot
        return LatestBlockhash(blockhash, last_valid)

    async def is_blockhash_valid(self, last_valid_slot: int) -> bool:
        return await self.current_slot() <= last_valid_slot

    # --- pools ---------------------------------------------------------------------

    async def get_pools(
        self, mint_x: str | None = None, mint_y: str | None = None, *,
        venue: Venue | None = None,
    ) -> list[AnyPool]:
        """Pools (of a pair, of a venue, or all), decoded; unchanged ones from memory."""
        pair = {mint_x, mint_y} if mint_x is not None and mint_y is not None else None
        return [self._pools[row["pool_id"]][1] for row in await self._stamp_reads.submit(object())
                if (venue is None or row["venue"] == venue.value)
                and (pair is None or {row["mint_a"], row["mint_b"]} == pair)]

    async def _read_stamps(self, calls: list[object]) -> list[list[asyncpg.Record] | Exception]:
        """Every pool's stamp, once for all the calls that wait (a worker quotes for
        hundreds of orders at once), and the pools that changed since, decoded again."""
        async with self._pg.acquire() as conn:
            stamps = await conn.fetch("SELECT pool_id, venue, mint_a, mint_b, updated_at "
                                      "FROM chain.pools ORDER BY pool_id")
            await self._refresh(conn, stamps)
        return [stamps] * len(calls)

    async def _refresh(self, conn: asyncpg.Connection, stamps: list[asyncpg.Record]) -> None:
        """Fetch and decode again the pools whose `updated_at` moved since this process
        last read them (decoding a DLMM pool, every bin, is the costly part)."""
        stale = [row["pool_id"] for row in stamps
                 if self._pools.get(row["pool_id"], (None, None))[0] != row["updated_at"]]
        if stale:
            for row in await conn.fetch(
                    "SELECT * FROM chain.pools WHERE pool_id = ANY($1::text[])", stale):
                self._pools[row["pool_id"]] = (row["updated_at"], pool_from_row(row))

    # --- transactions --------------------------------------------------------------

    async def send_transaction(self, raw: bytes) -> str:
        """Execute a signed swap transaction; returns its signature.

        Raises TransactionDroppedError when the (simulated) RPC node does not forward it:
        then it can never land. Sending a signature that already landed is a no-op.
        """
        pending = _decode_swap(raw)
        await self._sleep(0.02, 0.06)
        if self.failure_rate and self._rng.random() < self.failure_rate:
            raise TransactionDroppedError("transaction dropped: RPC node did not forward it")
        return await self._blocks.submit(pending)

    async def _apply_block(self, swaps: list[_PendingSwap]) -> list[str | Exception]:
        """Swaps sent together, applied in the order they came, like a block: one
        database transaction locks every pool they touch, and one statement writes the
        pools' final states and every transaction. If PostgreSQL refuses it for a swap's
        values, each swap is applied alone, so that the error is the culprit's alone."""
        try:
            return await self._apply(swaps)
        except ROW_ERRORS:  # a swap's values refused; PostgreSQL down is every swap's
            if len(swaps) == 1:
                raise
        outcomes: list[str | Exception] = []
        for swap_ in swaps:
            try:
                outcomes += await self._apply([swap_])
            except Exception as exc:  # noqa: BLE001 - this swap's own error
                outcomes.append(exc)
        return outcomes

    async def _apply(self, swaps: list[_PendingSwap]) -> list[str | Exception]:
        addresses = sorted({address for swap_ in swaps for address in swap_.addresses})
        async with self._pg.acquire() as conn, conn.transaction():
            # Lock every pool of the block, always in the same order (no deadlocks).
            # Only stamps: the pools themselves come from this process's cache
            # unless another process changed them since.
            locked = await conn.fetch(
                "SELECT pool_id, address, updated_at FROM chain.pools "
                "WHERE address = ANY($1::text[]) ORDER BY pool_id FOR UPDATE", addresses)
            await self._refresh(conn, locked)
            pools = {row["address"]: self._pools[row["pool_id"]][1] for row in locked}
            pool_ids = {row["address"]: row["pool_id"] for row in locked}
            known = await conn.fetch(
                "SELECT signature AS key, NULL::bigint AS last_valid FROM chain.transactions "
                "WHERE signature = ANY($1::text[]) UNION ALL "
                "SELECT blockhash, last_valid_slot FROM chain.blockhashes "
                "WHERE blockhash = ANY($2::text[])",
                [s.signature for s in swaps], list({s.blockhash for s in swaps}))
            landed = {row["key"] for row in known if row["last_valid"] is None}
            last_valid = {row["key"]: row["last_valid"] for row in known
                          if row["last_valid"] is not None}
            slot, now = await self.current_slot(), datetime.now(UTC)
            outcomes: list[str | Exception] = []
            rows: list[_Landed] = []
            changed: set[str] = set()  # addresses
            for swap_ in swaps:
                if any(address not in pools for address in swap_.addresses):
                    outcomes.append(
                        PermanentError("invalid transaction: a route step names no pool"))
                elif swap_.signature in landed:
                    outcomes.append(swap_.signature)  # already processed: never twice
                elif last_valid.get(swap_.blockhash, -1) < slot:
                    outcomes.append(BlockhashExpiredError("blockhash not found (expired)"))
                else:
                    try:
                        row = self._execute(swap_, pools, changed, int(now.timestamp()))
                    except PermanentError as exc:
                        outcomes.append(exc)
                        continue
                    row.pool_id = min(pool_ids[a] for a in swap_.addresses)
                    rows.append(row)
                    landed.add(swap_.signature)
                    outcomes.append(swap_.signature)
            if rows:
                await self._write_block(conn, [pools[a] for a in sorted(changed)], rows,
                                        slot, now)
        for address in changed:  # what this process just wrote is what it will read next
            self._pools[pools[address].pool_id] = (now, pools[address])
        return outcomes

    def _execute(self, swap_: _PendingSwap, pools: dict[str, AnyPool], changed: set[str],
                 now_ts: int) -> _Landed:
        """Run one swap on the block's pools (updated in `pools` if it succeeds); its
        transaction's row, failed or not. PermanentError: a route that does not add up."""
        route = swap_.route
        after = dict(pools)
        err: str | None = None
        legs: list[dict[str, str]] = []
        amount_out = 0
        try:
            legs, amount_out = _execute_route(route, after, now_ts)
        except InsufficientLiquidityError as exc:
            err = f"InsufficientLiquidity: {exc.message}"
        if err is None and amount_out < route.min_amount_out:
            err = SLIPPAGE_ERROR
        if err is None:
            pools.update(after)
            changed.update(swap_.addresses)
        return _Landed(
            signature=swap_.signature, blockhash=swap_.blockhash, pool_id="",
            input_mint=str(route.input_mint),
            # Later hops of a path carry 0: this is what the route spends.
            amount_in=sum(s.amount_in for s in route.steps),
            min_amount_out=route.min_amount_out,
            amount_out=None if err else amount_out, err=err, memo=swap_.memo,
            legs=[] if err else legs,
            confirm_after_s=self._rng.uniform(2.0, 3.0) * self.latency_scale,
        )

    @staticmethod
    async def _write_block(conn: asyncpg.Connection, changed: list[AnyPool],
                           rows: list[_Landed], slot: int, now: datetime) -> None:
        """The block's pools and transactions in one statement (one round trip)."""
        values = [pool_values(p) for p in changed]
        await conn.execute(
            "WITH written AS (UPDATE chain.pools p SET reserve_a = u.reserve_a, "
            "reserve_b = u.reserve_b, state = COALESCE(u.state, p.state), updated_at = $5 "
            "FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::jsonb[]) "
            "AS u(pool_id, reserve_a, reserve_b, state) WHERE p.pool_id = u.pool_id) "
            "INSERT INTO chain.transactions (signature, slot, blockhash, pool_id, "
            "input_mint, amount_in, min_amount_out, amount_out, err, memo, legs, "
            "landed_at, confirmed_at) "
            "SELECT t.signature, $6, t.blockhash, t.pool_id, t.input_mint, t.amount_in, "
            "t.min_amount_out, t.amount_out, t.err, t.memo, t.legs::jsonb, $5, t.confirmed_at "
            "FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::numeric[], "
            "$12::numeric[], $13::numeric[], $14::text[], $15::text[], $16::text[], "
            "$17::timestamptz[]) AS t(signature, blockhash, pool_id, input_mint, amount_in, "
            "min_amount_out, amount_out, err, memo, legs, confirmed_at)",
            [p.pool_id for p in changed],
            [v["reserve_a"] for v in values],
            [v["reserve_b"] for v in values],
            [v.get("state") for v in values],
            now,
            slot,
            *([getattr(row, name) for row in rows] for name in (
                "signature", "blockhash", "pool_id", "input_mint", "amount_in",
                "min_amount_out", "amount_out", "err", "memo")),
            json_texts([row.legs for row in rows]),
            [now + timedelta(seconds=row.confirm_after_s) for row in rows],
        )

    async def get_signature_status(self, signature: str) -> SignatureStatus | None:
        return await self._status_reads.submit(signature)

    async def expired_status(self, raw: bytes) -> SignatureStatus | None:
        """The status of a transaction whose blockhash has expired; None means it never
        landed and never will (a block refuses an expired blockhash).

        Read holding the locks on its pools: a block that checked the blockhash before it
        expired holds them until it commits, so it has landed the transaction or let it
        go by the time this reads, and every later block finds the blockhash expired.
        Without the locks, "not landed" could be read while such a block is committing.
        """
        pending = _decode_swap(raw)
        async with self._pg.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM chain.pools WHERE address = ANY($1::text[]) "
                "ORDER BY pool_id FOR UPDATE", list(pending.addresses))
            rows = await conn.fetch(_STATUS_SQL, [pending.signature])
        return _statuses([pending.signature], rows)[0]

    async def _read_statuses(
        self, signatures: list[str],
    ) -> list[SignatureStatus | Exception | None]:
        """The statuses asked for at the same time, in one query."""
        return list(_statuses(signatures, await self._pg.fetch(_STATUS_SQL, signatures)))

    async def _sleep(self, low: float, high: float) -> None:
        if self.latency_scale > 0:
            await asyncio.sleep(self._rng.uniform(low, high) * self.latency_scale)



@dataclass(frozen=True, slots=True)
class _PendingSwap:
    """A verified swap transaction, decoded, waiting for its block."""

    signature: str
    blockhash: str
    route: RouteInstruction
    addresses: tuple[str, ...]  # of its pools
    memo: str | None


@dataclass(slots=True)
class _Landed:
    """A swap's row in chain.transactions (failed swaps land too, with their error)."""

    signature: str
    blockhash: str
    pool_id: str  # the first (by id) of its pools
    input_mint: str
    amount_in: int
    min_amount_out: int
    amount_out: int | None
    err: str | None
    memo: str | None
    legs: list[dict[str, str]]
    confirm_after_s: float


def _decode_swap(raw: bytes) -> _PendingSwap:
    """Verify and decode a swap transaction: exactly one route instruction, signed by
    its owner (and any memos). PermanentError otherwise."""
    try:
        tx = Transaction.from_bytes(raw)
        tx.verify()
    except Exception as exc:  # solders raises its own error types for bad bytes
        raise PermanentError(f"invalid transaction: {exc}") from exc
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
    return _PendingSwap(str(tx.signatures[0]), str(message.recent_blockhash), route,
                        tuple(sorted({str(step.pool) for step in route.steps})), memo)


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


def _statuses(signatures: list[str],
              rows: list[asyncpg.Record]) -> list[SignatureStatus | None]:
    """Each signature's status from its `_STATUS_SQL` row; None if it has not landed."""
    by_signature = {row["signature"]: row for row in rows}
    now = datetime.now(UTC)
    return [None if (row := by_signature.get(signature)) is None else SignatureStatus(
        signature=signature,
        slot=row["slot"],
        err=row["err"],
        amount_out=None if row["amount_out"] is None else int(row["amount_out"]),
        confirmed=now >= row["confirmed_at"],
        confirmed_at=row["confirmed_at"],
    ) for signature in signatures]
