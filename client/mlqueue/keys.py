"""API keys, made locally: the same format as the server's ``python -m api.keys`` (not imported:
the client never imports the server). A key is ``mlq_<name>_<secret>``; the server keeps only
``name=<sha256 of the key>:scope|scope[;weight=N][;priority=P][;max_priority=P]`` in
``MLQUEUE_API_KEYS``."""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Sequence

SCOPES = ("submit", "read", "admin")
PRIORITIES = ("high", "normal", "low")  # in rank order, as the server's scheduler ranks them
NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
WEIGHT_RANGE = (0.01, 1000.0)  # what the server accepts in MLQUEUE_API_KEYS


def create_key(
    name: str,
    scopes: Sequence[str],
    *,
    weight: float | str | None = None,
    priority: str | None = None,
    max_priority: str | None = None,
) -> tuple[str, str]:
    """``(key, MLQUEUE_API_KEYS entry)``; ValueError for a bad name, an unknown scope or an option
    the server would refuse at start-up. ``weight``: its share of a busy queue against other keys
    (default 1); ``priority``: its jobs' default; ``max_priority``: the most it may ask for."""
    if not NAME.fullmatch(name):
        raise ValueError("name: 1-40 letters, digits, - or _")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    options = _options(weight, priority, max_priority)
    key = f"mlq_{name}_{secrets.token_urlsafe(32)}"
    extra = "".join(f";{k}={v}" for k, v in options.items())
    return key, f"{name}={hashlib.sha256(key.encode()).hexdigest()}:{'|'.join(scopes)}{extra}"


def _options(weight: float | str | None, priority: str | None, max_priority: str | None) -> dict[str, str]:
    # The order the server's tool writes them in, so both print the same entry.
    options: dict[str, str] = {}
    if weight is not None:
        text = str(weight).strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        low, high = WEIGHT_RANGE
        if not low <= value <= high:
            raise ValueError(f"weight must be a number from {low:g} to {high:g}; got {text[:20]!r}")
        options["weight"] = text
    for option, choice in (("priority", priority), ("max_priority", max_priority)):
        if choice is not None:
            if choice not in PRIORITIES:
                raise ValueError(f"{option} must be one of {', '.join(PRIORITIES)}; got {choice[:20]!r}")
            options[option] = choice
    if PRIORITIES.index(priority or "normal") < PRIORITIES.index(max_priority or "high"):
        raise ValueError("a key's default priority must not be above its max_priority")
    return options
