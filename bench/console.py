"""The benchmarks' progress lines: time-stamped and flushed at once, so a long run shows where it is."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def say(message: str, stream: TextIO | None = None) -> None:
    """One line on ``stream`` (default: stdout as it is now, so pytest's capture sees it)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=stream or sys.stdout, flush=True)
