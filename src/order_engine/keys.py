"""What an API key must be: rules shared by the settings (BOOTSTRAP_API_KEY), the key
store and the CLI. No imports of the service's own: the settings import this."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "oe_"
# A key someone chose (BOOTSTRAP_API_KEY) must be at least this long. Generated keys are
# "oe_" and 43 characters of base64url: 256 random bits.
MIN_KEY_LENGTH = 32
# Longer keys are refused unread (api/auth.py): a key that long could never authenticate.
MAX_KEY_LENGTH = 200
# What the table keeps of a key in clear, to tell keys apart in `keys list`: 8
# characters, and never more than a quarter of the key.
SHOWN_PREFIX_LENGTH = 8
MAKE_ONE = "python3 -c \"import secrets; print('oe_' + secrets.token_urlsafe(32))\""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_problem(key: str) -> str | None:
    """Why this chosen key is refused ("is 17 characters long; ..."), or None."""
    if len(key) < MIN_KEY_LENGTH:
        return (f"is {len(key)} characters long; an API key must have at least "
                f"{MIN_KEY_LENGTH} (make a random one: `{MAKE_ONE}`)")
    if len(key) > MAX_KEY_LENGTH:
        return f"is {len(key)} characters long; an API key has at most {MAX_KEY_LENGTH}"
    if not all("\x21" <= c <= "\x7e" for c in key):
        return "must be printable ASCII without spaces (it travels in an HTTP header)"
    return None


def shown_prefix(key: str) -> str:
    return key[:min(SHOWN_PREFIX_LENGTH, len(key) // 4)]
