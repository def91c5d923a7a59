"""Settings from the environment (and an optional `.env` file)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from limits import RateLimitItem, parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from order_engine.keys import key_problem


class Settings(BaseSettings):
    # No value in an error message: some are secrets (a key, a password in a URL).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)

    # Empty means "start an embedded server" (only `order-engine up` does that).
    database_url: str = ""
    redis_url: str = ""
    # Every Redis key and channel of this deployment starts with this prefix, so several
    # deployments (or test runs) can share one Redis without seeing each other.
    redis_prefix: str = "oe"

    host: str = "127.0.0.1"
    port: int = 3000
    # Several API processes on one port (SO_REUSEPORT). Off by default: with it on, a
    # second, unrelated server started on the same port would silently share the traffic.
    api_reuse_port: bool = False
    data_dir: str = ".data"

    # Orders mostly wait on the venues and the chain (~3 s each at realistic latency), so
    # a worker holds many at once; each costs little memory (BENCHMARKS.md: 5,000 at once
    # added ~30 MB).
    worker_concurrency: int = Field(default=200, ge=1)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_base_ms: int = Field(default=500, ge=0)
    retry_max_ms: int = Field(default=10_000, ge=0)

    # The worker's sweep re-enqueues unfinished orders that have not moved for this long
    # (enqueue lost, Redis flushed); a job that is still queued or running is left alone.
    sweep_interval_s: int = Field(default=3, ge=1, le=60)
    sweep_stale_s: float = Field(default=6.0, gt=0)
    # A running job's lease: a worker that dies loses its jobs to others after this long.
    worker_lease_s: float = Field(default=5.0, ge=1)
    # On SIGTERM a worker finishes the orders in hand for at most this long.
    worker_shutdown_grace_s: int = Field(default=20, ge=0)
    # Each worker serves Prometheus metrics on this port (0: not served).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    # A key that exists from startup (at least 32 characters; see keys.py). Every API
    # process makes it the bootstrap key as it starts and revokes the one before: change
    # it (or empty it) and the old one stops working. All API processes must agree.
    bootstrap_api_key: str = ""

    # 1.0 = realistic (quotes ~200 ms, confirmation 2-3 s); 0 = instant.
    sim_latency_scale: float = Field(default=1.0, ge=0)
    # Probability that a submission fails transiently (transaction not forwarded).
    sim_failure_rate: float = Field(default=0.0, ge=0, le=1)
    sim_seed: int | None = None

    max_order_amount: Decimal = Decimal("1000000000")
    # An order's price-impact limit (basis points of its output, lost against the best
    # price before the trade) when it does not set `maxPriceImpactBps`, and the most an
    # order may set it to. Over its limit, an order fails before anything is sent: the
    # largest order allowed moved the SOL/USDC pool from ~150 to 0.0025, and most of
    # others' next orders failed on slippage. 5% / 15%: where Uniswap's interface warns
    # and where it refuses to swap without expert mode.
    # The most of each input token a key's unfinished orders may hold together, in token
    # units like MAX_ORDER_AMOUNT (store/exposure.py); over it a submission is 409.
    max_key_exposure: Decimal = Field(default=Decimal("1000000000"), ge=0)
    max_price_impact_bps: int = Field(default=500, ge=1, le=10_000)
    max_price_impact_bps_ceiling: int = Field(default=1_500, ge=1, le=10_000)
    # Largest request body the API reads (bytes); larger ones are answered 413 unread.
    max_body_bytes: int = Field(default=65_536, ge=1_024)
    # Per-key rate limits, shared by every API process (counted in Redis), in the
    # `limits` library's notation: "100/second", or several: "10/second;600/minute";
    # empty: no limit. Orders: POST /api/orders; quotes: GET /api/quote (each is a
    # routing pass, ~11 ms of the API's CPU); reads: every other /api request.
    rate_limit_orders: str = "20/second"
    rate_limit_quotes: str = "5/second"
    rate_limit_reads: str = "50/second"
    # Per client address, what needs no key: /healthz, /readyz, /metrics, the dashboard's
    # files, /docs (a flood of /metrics was a PostgreSQL query each).
    rate_limit_anonymous: str = "50/second"
    # WebSockets one key may hold open at once, over all API processes: order sockets
    # (/ws/orders/{id}), and firehoses (/ws/orders), each of which is sent every event of
    # every order of the key (100 firehoses of one key fed 50 orders/s took another key's
    # p99 from 51 ms to 2.9 s: bench isolation).
    max_websockets_per_key: int = Field(default=100, ge=1)
    max_firehoses_per_key: int = Field(default=5, ge=1)
    # A refusal before the body is read (401, 413, 429; a WebSocket's 4401, 4429) is
    # answered after this long: a client that retries at once is held to one refusal
    # per connection per delay (api/gate.py).
    refusal_delay_s: float = Field(default=1.0, ge=0, le=30)
    # The request line and headers: a head still incomplete at this size gets 431.
    max_header_bytes: int = Field(default=32_768, ge=1_024)
    # From a request's first byte to its last header; then 408 and the connection closed.
    header_timeout_s: float = Field(default=10.0, gt=0)
    # From the end of the head to the end of the body; then 408 (or a close) likewise.
    body_timeout_s: float = Field(default=20.0, gt=0)
    # A connection with no request in progress is closed after this long (uvicorn's).
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    quote_timeout_s: float = Field(default=2.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)

    log_level: str = "INFO"

    @field_validator("rate_limit_orders", "rate_limit_quotes", "rate_limit_reads",
                     "rate_limit_anonymous")
    @classmethod
    def _valid_limits(cls, value: str) -> str:
        parse_limits(value)
        return value

    @model_validator(mode="after")
    def _impact_default_within_ceiling(self) -> Settings:
        if self.max_price_impact_bps > self.max_price_impact_bps_ceiling:
            raise ValueError("MAX_PRICE_IMPACT_BPS must be at most "
                             "MAX_PRICE_IMPACT_BPS_CEILING")
        return self

    @field_validator("bootstrap_api_key")
    @classmethod
    def _strong_bootstrap_key(cls, value: str) -> str:
        value = value.strip()
        if value and (problem := key_problem(value)) is not None:
            raise ValueError(f"BOOTSTRAP_API_KEY {problem}")
        return value

    @field_validator("sim_seed", mode="before")
    @classmethod
    def _empty_seed_is_none(cls, value: object) -> object:
        return None if value == "" else value


def parse_limits(value: str) -> tuple[RateLimitItem, ...]:
    """A rate-limit setting's limits; ValueError, saying what is expected, for a bad one."""
    if not value.strip():
        return ()
    try:
        return tuple(parse_many(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a rate limit: expected e.g. '100/second' or "
                         "'10/second;600/minute' (empty: no limit)") from exc


def to_asyncpg_url(url: str) -> str:
    """Accept the usual `postgresql://` spelling and hand SQLAlchemy its asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
