"""Settings from the environment (and an optional `.env` file)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from pydantic import Field, field_validator
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
    # Largest request body the API reads (bytes); larger ones are answered 413 unread.
    max_body_bytes: int = Field(default=65_536, ge=1_024)
    quote_timeout_s: float = Field(default=2.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)

    log_level: str = "INFO"

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


def to_asyncpg_url(url: str) -> str:
    """Accept the usual `postgresql://` spelling and hand SQLAlchemy its asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
