"""Durations as people write them: ``500ms``, ``30s``, ``5m``, ``2h``, or plain seconds.

ASCII digits only (``\\d`` would take other scripts' digits, which ``float`` reads too), at most
``MAX_DIGITS`` of them before and after the point, so the value is always a finite float.
"""

from __future__ import annotations

import re

MAX_DIGITS = 12
# also what the OpenAPI document says
DURATION_PATTERN = rf"^\s*([0-9]{{1,{MAX_DIGITS}}}(?:\.[0-9]{{1,{MAX_DIGITS}}})?)\s*(ms|s|m|h|d)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """Seconds; raises ValueError for anything else (negative, empty, unknown unit, too many digits).
    Callers bound the value for their use (a Cancel-After deadline by the job TTL)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text[:40]!r} (use e.g. 500ms, 30s, 5m, 2h; at most {MAX_DIGITS} digits)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
