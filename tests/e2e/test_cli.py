"""The `order-engine` command line against a running service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from order_engine.config import Settings
from tests.processes import env_for
from tests.stack import API_KEY, Stack, running_stack

pytestmark = pytest.mark.e2e


async def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "order_engine.cli", *args],
        env={**env_for(stack.settings), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60,
    )


async def test_submit_watch_prints_each_status_and_exits_0(stack: Stack) -> None:
    result = await _cli(stack, "submit", "sol", "usdc", "0.25", "--watch", "--url",
                        stack.base_url, "--api-key", API_KEY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for status in ("pending", "routing", "building", "submitted", "confirmed"):
        assert any(status in line for line in lines), result.stdout
    order_id = lines[0].strip()
    order = await stack.wait_terminal(order_id)
    assert order["txHash"] in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["submit", "SOL", "DOGE", "1"], "unknown token 'DOGE'"),
        (["submit", "SOL", "USDC", "1", "--api-key", "wrong"], "Unauthorized"),
        (["submit", "SOL", "USDC", "1", "--url", "http://127.0.0.1:9"], "cannot reach"),
    ],
)
async def test_cli_errors_are_clear_and_exit_non_zero(
    stack: Stack, args: list[str], says: str
) -> None:
    if "--url" not in args:
        args = [*args, "--url", stack.base_url]
    if "--api-key" not in args:
        args = [*args, "--api-key", API_KEY]
    result = await _cli(stack, *args)
    assert result.returncode == 1
    assert says in result.stderr


async def test_keys_create_prints_a_key_that_works(stack: Stack) -> None:
    result = await _cli(stack, "keys", "create", "--name", "cli-test")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("oe_")
    async with stack.client(key) as http:
        assert (await http.get("/api/tokens")).status_code == 200


async def test_orders_lists_recent_orders_as_a_table(stack: Stack) -> None:
    order_id = await stack.submit(inputToken="JUP", outputToken="USDC", amount="12")
    await stack.wait_terminal(order_id)
    result = await _cli(stack, "orders", "--limit", "5", "--url", stack.base_url,
                        "--api-key", API_KEY)
    assert result.returncode == 0, result.stderr
    assert order_id[:8] in result.stdout
    assert "JUP->USDC" in result.stdout
    assert "confirmed" in result.stdout


async def test_orders_with_a_bad_key_says_so(stack: Stack) -> None:
    result = await _cli(stack, "orders", "--url", stack.base_url, "--api-key", "wrong")
    assert result.returncode == 1
    assert "Unauthorized" in result.stderr


async def test_bench_ingest_and_e2e_report_their_figures(stack: Stack, tmp_path: Path) -> None:
    ingest_json, e2e_json = tmp_path / "ingest.json", tmp_path / "e2e.json"
    ingest = await _cli(stack, "bench", "ingest", "--connections", "4", "--duration", "1",
                        "--reference-seconds", "1",
                        "--url", stack.base_url, "--api-key", API_KEY, "--json", str(ingest_json))
    e2e = await _cli(stack, "bench", "e2e", "--orders", "30", "--connections", "4",
                     "--no-reference", "--url", stack.base_url, "--api-key", API_KEY,
                     "--database-url", stack.settings.database_url, "--json", str(e2e_json))

    assert ingest.returncode == 0, ingest.stderr
    figures = orjson.loads(ingest_json.read_bytes())
    assert figures["requests"] > 0
    assert figures["errors"] == 0
    assert figures["latency_ms_p50"] <= figures["latency_ms_p99"] <= figures["latency_ms_max"]
    # The same-run reference (DATABASE_URL and REDIS_URL from the environment), and ours
    # as ratios to it, in the JSON and the table.
    assert figures["reference"]["http"]["requests_per_s"] > 0
    assert figures["reference"]["postgres"]["commits_per_s"] > 0
    assert figures["reference"]["redis"]["round_trips_per_s"] > 0
    assert figures["vs_reference"]["orders_per_s / http.requests_per_s"] > 0
    assert figures["vs_reference"]["orders_per_s / postgres.commits_per_s"] > 0
    # Measured before and after the load: both passes, and how far apart they are.
    assert set(figures["reference"]["passes"]) == {"before", "after"}
    assert figures["reference"]["drift"]["http.requests_per_s"] >= 0
    assert "orders_per_s / http.requests_per_s" in ingest.stdout
    assert e2e.returncode == 0, e2e.stderr
    outcome = orjson.loads(e2e_json.read_bytes())
    assert "reference" not in outcome  # --no-reference
    assert outcome["confirmed"] == 30
    assert outcome["exactly_once"] is True
    assert outcome["swaps_per_order"] == {"1": 30}


async def test_bench_ws_reports_every_event_delivered_once(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "ws.json"
    idle_key, _ = await stack.services.api_keys.create("bench-idle")
    result = await _cli(stack, "bench", "ws", "--sockets", "20", "--orders", "5",
                        "--watchers-per-order", "2", "--rate", "20", "--idle-api-key", idle_key,
                        "--no-reference",
                        "--url", stack.base_url, "--api-key", API_KEY, "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = orjson.loads(out.read_bytes())
    assert figures["watchers"] == 10
    # Five statuses for each watcher: live, or from the history if committed before it
    # connected.
    assert figures["deliveries"] + figures["replayed"] == 10 * 5
    assert figures["missing"] == figures["duplicated"] == figures["incomplete_watchers"] == 0
    # The idle watchers were held through the run, and got nothing of another key's.
    assert figures["idle_held_during_flow"] is True
    assert figures["idle_dropped"] == figures["idle_stray_messages"] == 0
    assert figures["peak_open_sockets"] >= 21


async def test_bench_isolation_floods_past_the_limits_without_a_5xx(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(rate_limit_orders="20/second", rate_limit_quotes="5/second",
                             rate_limit_reads="50/second", rate_limit_anonymous="5/second",
                             max_firehoses_per_key=2,
                             refusal_delay_s=0.5, header_timeout_s=1.0,
                             keep_alive_timeout_s=1)
    async with running_stack(settings) as stack:
        attacker, _ = await stack.services.api_keys.create("attacker")
        out = tmp_path / "isolation.json"
        result = await _cli(stack, "bench", "isolation", "--attacker-key", attacker,
                            "--seconds", "2", "--connections", "2", "--sockets", "4",
                            "--idle-connections", "10", "--slowloris", "3",
                            "--url", stack.base_url, "--api-key", API_KEY,
                            "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = {row["phase"]: row for row in orjson.loads(out.read_bytes())}
    assert list(rows) == ["quiet", "flood: orders", "flood: quotes", "flood: websockets",
                          "flood: no key", "all floods at once", "flood: slow clients",
                          "quiet again"]
    assert all(row["5xx"] == 0 for row in rows.values())
    assert all(row["answers"].get("victim 201") for row in rows.values())
    orders = rows["flood: orders"]["answers"]
    assert orders["attacker 201"] > 0
    assert orders["attacker 429"] > 0
    assert rows["flood: quotes"]["answers"]["attacker 429"] > 0
    assert rows["flood: websockets"]["attacker sockets"] == {"closed 4429": 2, "open": 2}
    no_key = rows["flood: no key"]["answers"]
    assert no_key["no key 401"] > 0
    assert no_key["oversize 413"] > 0
    assert no_key["metrics 429"] > 0
    slow = rows["flood: slow clients"]["answers"]
    assert slow["slowloris 408"] > 0
    assert slow["idle closed"] > 0
