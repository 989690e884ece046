"""``python -m api.keys NAME --scopes submit,read``: make an API key and its config entry.

The key is printed once and never stored; the server keeps only its sha256 (``MLQUEUE_API_KEYS``).
"""

from __future__ import annotations

import argparse
import re

from api.security import Scope, generate_key, parse_api_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="who the key is for (letters, digits, - and _)")
    parser.add_argument("--scopes", default="submit,read", help="comma-separated: submit, read, admin")
    parser.add_argument("--weight", help="its share of a busy queue against other keys (default 1)")
    parser.add_argument("--priority", choices=["high", "normal", "low"], help="default priority of its jobs")
    parser.add_argument("--max-priority", choices=["high", "normal", "low"], help="the most it may ask for")
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", args.name):
        parser.error("name: 1-40 letters, digits, - or _")
    try:
        scopes = [Scope(s.strip()) for s in args.scopes.split(",") if s.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    options = {
        k: v
        for k, v in (("weight", args.weight), ("priority", args.priority), ("max_priority", args.max_priority))
        if v
    }
    try:
        parse_api_keys(f"{args.name}={'0' * 64}:submit" + "".join(f";{k}={v}" for k, v in options.items()))
    except ValueError as exc:
        parser.error(str(exc))
    key, entry = generate_key(args.name, scopes, options)
    print(f"API key (shown once, keep it secret):\n  {key}\n")  # noqa: T201 - CLI output
    print(f"Add to MLQUEUE_API_KEYS (comma-separated with any others):\n  {entry}")  # noqa: T201


if __name__ == "__main__":
    main()
