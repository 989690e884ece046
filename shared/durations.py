"""Durations as people write them: ``500ms``, ``30s``, ``5m``, ``2h``, or plain seconds."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$"  # also what the OpenAPI document says
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """Seconds; raises ValueError for anything else (negative, empty, unknown unit)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 5m, 2h)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
