# syntax=docker/dockerfile:1
#
# order-engine image: one image for every role.
#   docker run IMAGE                        -> the HTTP/WebSocket API on :3000 (default)
#   docker run IMAGE order-engine worker    -> a worker
#   docker run IMAGE order-engine migrate   -> apply migrations and seed the simulated chain
# DATABASE_URL and REDIS_URL must be set (see docker-compose.yml and .env.example).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: compile what needs compiling, into a self-contained virtualenv ---------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# gcc + libc headers for any dependency that has no wheel for the target platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src

# Dependencies first: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the project itself (its dependencies are already pinned and installed above).
# README* is a glob so the build works whether or not README.md exists yet.
COPY pyproject.toml README* ./
COPY src ./src
RUN pip install --no-deps . \
    && order-engine --help >/dev/null

# --- runtime: the virtualenv, the migrations, a non-root user -----------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="order-engine" \
      org.opencontainers.image.description="Order execution engine for Solana swaps"

ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/.data \
    MIGRATIONS_DIR=/app/migrations \
    MPLCONFIGDIR=/tmp/matplotlib

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

WORKDIR /app

COPY --from=builder /opt/venv /opt/venv
# `order-engine migrate` looks for ./migrations (or $MIGRATIONS_DIR); alembic.ini lets
# `alembic upgrade head` work from /app too. Owned by root: the app cannot modify them.
COPY migrations ./migrations
COPY alembic.ini ./

# The only place the app may write (DATA_DIR: dev key file of `order-engine up`).
RUN mkdir -p /app/.data && chown app:app /app/.data

USER 10001:10001

EXPOSE 3000

# python, not curl: the slim image has no curl. Worker and migrate containers disable
# this check (they serve no HTTP); see docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=2)"]

CMD ["order-engine", "api"]
