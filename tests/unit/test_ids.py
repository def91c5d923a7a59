"""Order ids are UUIDv7: what RFC 9562 says of their bits, ordered by creation time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from order_engine.store.ids import new_order_id

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1),
                        timezones=st.just(UTC))


@given(at=instants)
def test_an_order_id_is_a_version_7_uuid_carrying_its_millisecond(at: datetime) -> None:
    order_id = new_order_id(at)
    assert order_id.version == 7
    assert order_id.variant == uuid.RFC_4122
    assert order_id.int >> 80 == int(at.timestamp() * 1000)
    assert uuid.UUID(str(order_id)) == order_id


@given(at=instants, later_ms=st.integers(1, 10**9))
def test_a_later_order_sorts_after_an_earlier_one(at: datetime, later_ms: int) -> None:
    later = at + timedelta(milliseconds=later_ms)
    assert str(new_order_id(at)) < str(new_order_id(later))  # as PostgreSQL's uuid sorts
    assert new_order_id(at).bytes < new_order_id(later).bytes


def test_ids_of_one_instant_are_all_different() -> None:
    now = datetime.now(UTC)
    assert len({new_order_id(now) for _ in range(10_000)}) == 10_000
