"""Reading the simulated chain's ledger back, to check what landed against what was asked."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from order_engine.market import tables
from order_engine.market.genesis import DEFAULT_POOLS


async def landed_count(engine: AsyncEngine, signatures: list[str], ok_only: bool = True) -> int:
    t = tables.transactions
    stmt = select(func.count()).select_from(t).where(t.c.signature.in_(signatures))
    if ok_only:
        stmt = stmt.where(t.c.err.is_(None))
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def reserve_mismatches(engine: AsyncEngine) -> list[str]:
    """Pools whose reserves differ from genesis plus every successful swap that landed."""
    expected: dict[str, list[int]] = {
        spec.pool_id: [spec.reserve_base, spec.reserve_quote] for spec in DEFAULT_POOLS
    }
    deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    async with engine.connect() as conn:
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
        genesis, delta = expected[pool_id], deltas[pool_id]
        want = [genesis[0] + delta[0], genesis[1] + delta[1]]
        got = [int(row.reserve_a), int(row.reserve_b)]
        if want != got:
            problems.append(f"{pool_id}: reserves {got}, expected {want}")
    return problems
