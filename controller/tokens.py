"""Secrets the controller hands out, and how they are stored (SHA-256 only).

Tokens are 256-bit random values, so a fast unsalted hash is enough to make a
stolen database useless for impersonation, and lets us look a token up by its
hash with an index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NODE_TOKEN_PREFIX = "lfn_"
ENROLLMENT_TOKEN_PREFIX = "lfe_"
API_TOKEN_PREFIX = "lfi_"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)
