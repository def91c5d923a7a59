"""Reading the simulated chain's ledger back, to check what landed against what was asked."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from order_engine.market import tables


async def landed_count(engine: AsyncEngine, signatures: list[str], ok_only: bool = True) -> int:
    t = tables.transactions
    stmt = select(func.count()).select_from(t).where(t.c.signature.in_(signatures))
    if ok_only:
        stmt = stmt.where(t.c.err.is_(None))
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def reserve_mismatches(engine: AsyncEngine) -> list[str]:
    """Pools whose reserves differ from genesis plus every successful swap that landed.

    Pools and transactions are read in one snapshot: the market simulator may still be
    trading, and a swap landing between two separate reads would look like a mismatch."""
    deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        pools = {row.pool_id: row for row in (await conn.execute(select(tables.pools))).all()}
        swaps = (
            await conn.execute(
                select(tables.transactions).where(tables.transactions.c.err.is_(None))
            )
        ).all()
    for swap in swaps:
        for leg in swap.legs or []:
            pool = pools[leg["pool_id"]]
            d = deltas[leg["pool_id"]]
            amount_in, amount_out = int(leg["amount_in"]), int(leg["amount_out"])
            if leg["input_mint"] == pool.mint_a:
                d[0], d[1] = d[0] + amount_in, d[1] - amount_out
            else:
                d[0], d[1] = d[0] - amount_out, d[1] + amount_in
    problems = []
    for pool_id, row in pools.items():
        delta = deltas[pool_id]
        want = [int(row.genesis_reserve_a) + delta[0], int(row.genesis_reserve_b) + delta[1]]
        got = [int(row.reserve_a), int(row.reserve_b)]
        if want != got:
            problems.append(f"{pool_id}: reserves {got}, expected {want}")
    return problems
