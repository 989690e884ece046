"""Rows for ``mlqueue batch``: CSV (a header row maps columns to feature names) or JSON Lines in,
the results as CSV (outputs flattened to columns) or JSON Lines out."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from mlqueue._types import JsonValue

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


def is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES


def _number(cell: str) -> float | str:
    # A cell that is not a number goes as it is: the API fails that row alone, with its reason.
    try:
        return float(cell)
    except ValueError:
        return cell


def _is_header(row: Sequence[str]) -> bool:
    return any(not isinstance(_number(c), float) for c in row)


def read_rows(path: Path, features: Sequence[str]) -> list[JsonValue]:
    """The inputs, one per data row. CSV with a header: the columns named like the model's
    features, in the model's order (other columns, such as an id, are left out); ValueError if a
    feature has no column. CSV without a header: positional. JSON Lines: each line as it is."""
    with path.open(newline="", encoding="utf-8") as f:
        if is_jsonl(path):
            return [json.loads(line) for line in f if line.strip()]
        rows = [r for r in csv.reader(f) if r]
    if not rows or not _is_header(rows[0]):
        return [[_number(c) for c in r] for r in rows]
    header, data = [h.strip() for h in rows[0]], rows[1:]
    if not features:  # a model that does not list its features: named inputs, as the header says
        return [{h: _number(c) for h, c in zip(header, r, strict=False)} for r in data]
    missing = [f for f in features if f not in header]
    if missing:
        raise ValueError(f"{path}: no column for {', '.join(missing)} (the header has {', '.join(header)})")
    columns = [header.index(f) for f in features]
    return [[_number(r[c]) if c < len(r) else "" for c in columns] for r in data]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"label": "a", "probabilities": {"a": 0.9}}`` → ``{"label": "a", "probabilities.a": 0.9}``."""
    if not isinstance(value, dict):
        return {prefix or "output": value}
    flat: dict[str, Any] = {}
    for k, v in value.items():
        flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return flat


def _csv_row(item: dict[str, Any]) -> dict[str, Any]:
    error = item.get("error") or {}
    row = {"index": item["index"], "status": item["status"], **flatten(item.get("output") or {})}
    row["error"] = f"{error.get('code')}: {error.get('message')}" if error else ""
    return row


def write_results(items: Iterable[dict[str, Any]], out: IO[str], *, as_csv: bool) -> Iterator[dict[str, Any]]:
    """Write ``items`` to ``out``, yielding each once written (so the caller can count them). The
    CSV's columns come from the first succeeded item: rows before it wait for it in memory."""
    if not as_csv:
        for item in items:
            out.write(json.dumps(item) + "\n")
            yield item
        return
    waiting: list[dict[str, Any]] = []
    writer: csv.DictWriter[str] | None = None
    for item in items:
        if writer is None:
            waiting.append(item)
            if item["status"] != "succeeded":
                continue
            writer = csv.DictWriter(out, fieldnames=list(_csv_row(item)), extrasaction="ignore")
            writer.writeheader()
            for w in waiting:
                writer.writerow(_csv_row(w))
                yield w
            continue
        writer.writerow(_csv_row(item))
        yield item
    if writer is None:  # nothing succeeded: the columns every item has
        writer = csv.DictWriter(out, fieldnames=["index", "status", "error"], extrasaction="ignore")
        writer.writeheader()
        for w in waiting:
            writer.writerow(_csv_row(w))
            yield w
