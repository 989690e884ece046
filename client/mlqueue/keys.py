"""API keys, made locally: the same format as the server's ``python -m api.keys`` (not imported:
the client never imports the server). A key is ``mlq_<name>_<secret>``; the server keeps only
``name=<sha256 of the key>:scope|scope`` in ``MLQUEUE_API_KEYS``."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence

SCOPES = ("submit", "read", "admin")
NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def create_key(name: str, scopes: Sequence[str]) -> tuple[str, str]:
    """``(key, MLQUEUE_API_KEYS entry)``; ValueError for a bad name or an unknown scope."""
    if not NAME.fullmatch(name):
        raise ValueError("name: 1-40 letters, digits, - or _")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    key = f"mlq_{name}_{secrets.token_urlsafe(32)}"
    return key, f"{name}={hashlib.sha256(key.encode()).hexdigest()}:{'|'.join(scopes)}"
