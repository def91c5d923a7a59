"""An order read on the hot path (built without the ORM's constructor) reads like one
built by it, in a process where nothing else has touched the ORM yet: a worker's first
job."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_an_order_built_from_a_record_in_a_fresh_process_reads_its_values() -> None:
    script = textwrap.dedent("""
        import uuid
        from datetime import UTC, datetime
        from order_engine.store.models import Order
        from order_engine.store.repository import _order_from_record

        now = datetime.now(UTC)
        record = {column.name: None for column in Order.__table__.columns}
        record.update(id=uuid.uuid4(), status="routing", attempts=1, amount_in=10**9,
                      min_amount_out=5, created_at=now, updated_at=now)
        order = _order_from_record(record)
        print(order.status, order.attempts, order.amount_in, order.min_amount_out,
              order.tx_signature)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["routing", "1", "1000000000", "5", "None"]
