"""``mlqueue``: the command line over the HTTP API (``mlqueue --help``). Talks HTTP only.

Exit codes, for scripts: see ``ExitCode``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from enum import IntEnum
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlqueue import tabular
from mlqueue._requests import is_image
from mlqueue._types import JsonValue
from mlqueue._version import __version__
from mlqueue.client import DEFAULT_URL, Client
from mlqueue.errors import (
    ApiError,
    ConnectionFailed,
    Forbidden,
    JobFailed,
    MlqueueError,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from mlqueue.jobs import Job
from mlqueue.keys import create_key


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1  # the job ended failed, canceled or aborted; or some rows of a batch failed
    USAGE = 2  # bad arguments, or the API refused the request (400, 409, 413, 415, 422)
    NOT_FOUND = 3  # 404, 410: no such job, model or version (or it expired)
    AUTH = 4  # 401, 403: no key, unknown key, or a key without the scope (or that priority)
    UNAVAILABLE = 5  # 429, 503 (after the retries), another 5xx, or the API cannot be reached
    TIMEOUT = 6  # the job was still queued or running when --wait ran out


HINTS = {
    "unauthorized": "pass --api-key or set MLQUEUE_API_KEY",
    "invalid_api_key": "the server does not know this key (make one: mlqueue keys create NAME)",
    "insufficient_scope": "this key lacks the scope this command needs (submit, read or admin)",
    "model_not_found": "mlqueue models lists the models",
    "job_not_found": "mlqueue jobs lists this key's jobs",
    "job_not_cancelable": "the job has already finished",
    "expired": "the job's data aged out (MLQUEUE_JOB_TTL_S on the server)",
    "rate_limited": "too many requests, still so after the retries: slow down",
    "auth_rate_limited": "too many failed authentications from this address: check the key",
    "priority_not_allowed": "this key may not ask for that priority: a lower --priority, or none for its default",
    "job_not_retryable": "only a failed or aborted job, or a batch with failed items, can be retried",
    "input_unavailable": "the job's inputs are no longer stored: submit it again",
    "fair_share_exceeded": "this key holds more than its share of a full queue: send less at once",
    "queue_full": "the model's queue is full: try again later",
}
PRIORITIES = ("high", "normal", "low")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _write_json(value: JsonValue) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _exit_code(exc: MlqueueError) -> ExitCode:
    if isinstance(exc, JobFailed):
        return ExitCode.JOB_FAILED
    if isinstance(exc, WaitTimeout):
        return ExitCode.TIMEOUT
    if isinstance(exc, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(exc, Unauthorized | Forbidden):
        return ExitCode.AUTH
    if isinstance(exc, RateLimited | Unavailable | ConnectionFailed):
        return ExitCode.UNAVAILABLE
    if isinstance(exc, ApiError) and exc.status >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.USAGE


def _report(exc: MlqueueError, args: argparse.Namespace) -> ExitCode:
    code = _exit_code(exc)
    if args.json and isinstance(exc, JobFailed | WaitTimeout):
        _write_json(exc.job.data)
    elif args.json and isinstance(exc, ApiError):
        _write_json({"status": exc.status, "code": exc.code, "detail": exc.detail})
    if isinstance(exc, ApiError):
        hint = HINTS.get(exc.code)
        if exc.retry_after is not None and exc.status in (429, 503):
            hint = f"{hint + '; ' if hint else ''}the API asks to retry after {exc.retry_after:g}s"
        message = f"error: {exc.detail} ({exc.status} {exc.code})" + (f"\n  hint: {hint}" if hint else "")
        err.print(message, markup=False)
    elif isinstance(exc, ConnectionFailed):
        err.print(f"error: cannot reach {args.url}: is the API running? (--url or MLQUEUE_URL)", markup=False)
    else:
        err.print(f"error: {exc}", markup=False)
    return code


# Commands ---------------------------------------------------------------------------------------


def cmd_models(mlq: Client, args: argparse.Namespace) -> ExitCode:
    models = mlq.models()
    if args.json:
        _write_json(models)
        return ExitCode.OK
    table = Table("model", "latest", "task", "input", "loaded on", box=box.SIMPLE_HEAD)
    for m in models:
        latest = next((v for v in m["versions"] if v["version"] == m["latest_version"]), m["versions"][-1])
        spec = latest.get("input", {})
        features = spec.get("features") or []
        kind = f"{len(features)} features" if features else str(spec.get("type", "?"))
        loaded = m.get("loaded_on", latest.get("loaded_on", []))
        table.add_row(m["name"], str(m["latest_version"]), str(latest.get("task", "")), kind, f"{len(loaded)} workers")
    out.print(table)
    return ExitCode.OK


def _parse_input(values: Sequence[str]) -> JsonValue:
    """``5.1 3.5 ...`` → a list; ``name=5.1 ...`` → an object. Non-numbers go as they are (the API
    says what is wrong with them)."""

    def number(text: str) -> float | str:
        try:
            return float(text)
        except ValueError:
            return text

    if all("=" in v for v in values):
        return {k: number(v) for k, _, v in (p.partition("=") for p in values)}
    return [number(v) for v in values]


def _show_output(output: JsonValue) -> None:
    if not isinstance(output, dict):
        out.print(json.dumps(output), markup=False)
        return
    for key, value in output.items():
        if isinstance(value, dict):
            out.print(f"{key}:", markup=False)
            for k, v in value.items():
                out.print(f"  {k}: {v}", markup=False)
        else:
            out.print(f"{key}: {value}", markup=False)


def cmd_predict(mlq: Client, args: argparse.Namespace) -> ExitCode:
    values: list[str] = args.input
    image = len(values) == 1 and (is_image(values[0]) or Path(values[0]).suffix.lower() in IMAGE_SUFFIXES)
    if image and not Path(values[0]).is_file():
        raise UsageError(f"no such file: {values[0]}")
    submit = mlq.submit_image if image else mlq.submit
    payload = Path(values[0]) if image else _parse_input(values)
    job = submit(args.model, payload, wait=args.wait, version=args.version, priority=args.priority)
    if not job.done:
        job.wait(args.wait)
    if not job.succeeded:
        raise JobFailed(job)
    if args.json:
        _write_json(job.data)
    else:
        _show_output(job.output)
    return ExitCode.OK


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,  # stderr: stdout stays the results (or --json)
    )


def cmd_batch(mlq: Client, args: argparse.Namespace) -> ExitCode:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    manifest = mlq.model(args.model)
    wanted = args.version or manifest["latest_version"]
    version = next((v for v in manifest["versions"] if v["version"] == wanted), manifest["versions"][-1])
    features = [f["name"] for f in version.get("input", {}).get("features") or []]
    try:
        rows = tabular.read_rows(path, features)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from exc
    job = mlq.batch(args.model, rows, version=args.version, priority=args.priority)
    with _progress_bar() as bar:
        task = bar.add_task(f"{args.model} {_status_line(job)}", total=len(rows))
        for _ in job.events():  # progress (and queue, while it waits) events, until the batch ends
            p = job.progress
            bar.update(task, completed=p.done if p else 0, description=f"{args.model} {_status_line(job)}")
    if job.status != "succeeded":
        raise JobFailed(job)
    target = Path(args.out) if args.out else None
    as_csv = target is not None and not tabular.is_jsonl(target)
    with target.open("w", newline="", encoding="utf-8") if target else nullcontext(sys.stdout) as f:
        failed = sum(item["status"] != "succeeded" for item in tabular.write_results(job.results(), f, as_csv=as_csv))
    summary = {"job": job.id, "rows": len(rows), "failed": failed, "out": str(target) if target else None}
    if args.json and target:
        _write_json(summary)
    elif target:
        err.print(f"{len(rows) - failed} of {len(rows)} rows succeeded, {failed} failed; results in {target}")
    return ExitCode.JOB_FAILED if failed else ExitCode.OK


def _status_line(job: Job) -> str:
    """``queued (#3 in line, ~12s)`` while it waits, else its status."""
    return f"{job.status} ({_place(job)})" if job.queue else job.status


def _place(job: Job) -> str:
    q = job.queue
    if q is None:
        return ""
    eta = f"~{q.eta_s:.0f}s" if q.eta_s is not None else "no estimate: nothing is draining"
    return f"#{q.position} in line, {eta}"


def _job_row(job: Job) -> list[str]:
    p = job.progress
    progress = f"{p.done}/{p.total}" if p else ""
    created = str(job.data.get("created_at", ""))[:19].replace("T", " ")
    return [job.id, job.model, job.kind, job.status, created, progress]


def cmd_jobs(mlq: Client, args: argparse.Namespace) -> ExitCode:
    jobs = mlq.jobs(status=args.status, model=args.model, reason=args.reason, limit=args.limit)
    if args.json:
        _write_json([j.data for j in jobs])
        return ExitCode.OK
    # A job id is what the next command needs: never truncated, whatever the terminal's width.
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True, min_width=26)
    for column in ("model", "kind", "status", "created", "progress"):
        table.add_column(column)
    for j in jobs:
        table.add_row(*_job_row(j))
    out.print(table)
    return ExitCode.OK


def _show_job(job: Job) -> None:
    for key in ("id", "model", "version", "kind", "status", "priority", "created_at", "started_at", "completed_at"):
        out.print(f"{key}: {job.data.get(key)}", markup=False)
    if job.queue:
        out.print(f"queue: {_place(job)}", markup=False)
    if job.retry_of:
        out.print(f"retry_of: {job.retry_of}", markup=False)
    if job.progress:
        out.print(f"progress: {job.progress.done}/{job.progress.total} done, {job.progress.failed} failed")
    if job.error:
        out.print(f"error: {job.error.get('code')}: {job.error.get('message')}", markup=False)
    if job.output is not None:
        out.print("output:")
        out.print(json.dumps(job.output, indent=2), markup=False)


def cmd_job(mlq: Client, args: argparse.Namespace) -> ExitCode:
    job = mlq.job(args.id)
    if args.json:
        _write_json(job.data)
    else:
        _show_job(job)
    return ExitCode.OK


def cmd_cancel(mlq: Client, args: argparse.Namespace) -> ExitCode:
    job = mlq.cancel(args.id)
    if args.json:
        _write_json(job.data)
    else:
        out.print(f"{job.id}: {job.status}")
    return ExitCode.OK


def cmd_retry(mlq: Client, args: argparse.Namespace) -> ExitCode:
    job = mlq.retry(args.id)
    if args.json:
        _write_json(job.data)
    else:
        out.print(f"{job.id}: {_status_line(job)} (retry of {job.retry_of})", markup=False)
    return ExitCode.OK


def cmd_keys_create(args: argparse.Namespace) -> ExitCode:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        key, entry = create_key(
            args.name, scopes, weight=args.weight, priority=args.priority, max_priority=args.max_priority
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        _write_json({"key": key, "entry": entry})
    else:
        # Word for word what the server's `python -m api.keys` prints.
        sys.stdout.write(f"API key (shown once, keep it secret):\n  {key}\n\n")
        sys.stdout.write(f"Add to MLQUEUE_API_KEYS (comma-separated with any others):\n  {entry}\n")
    return ExitCode.OK


# Parsing ----------------------------------------------------------------------------------------


class UsageError(Exception):
    """A local mistake in the arguments (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"the API (default $MLQUEUE_URL or {DEFAULT_URL})")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="an API key (default $MLQUEUE_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(
        prog="mlqueue",
        parents=[common],
        description="Predictions from an mlqueue API, over HTTP.",
        epilog="exit codes: " + ", ".join(f"{c.value} {c.name.lower()}" for c in ExitCode),
    )
    parser.add_argument("--version", action="version", version=f"mlqueue-client {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("models", parents=[common], help="the models, as a table")

    p = sub.add_parser("predict", parents=[common], help="one prediction: values, name=value pairs or an image")
    p.add_argument("model")
    p.add_argument("input", nargs="+", help="5.1 3.5 1.4 0.2 | sepal_length=5.1 ... | digit.png")
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for the answer (default 60)")
    p.add_argument("--model-version", dest="version", type=int, help="a model version (default: the latest)")
    p.add_argument("--priority", choices=PRIORITIES, help="high, normal or low (default: the key's)")

    p = sub.add_parser("batch", parents=[common], help="a CSV or JSON Lines file as one batch job, with a progress bar")
    p.add_argument("model")
    p.add_argument("file", help=".csv (a header row names the features) or .jsonl")
    p.add_argument("--out", help="results as .csv or .jsonl (default: JSON Lines on stdout)")
    p.add_argument("--model-version", dest="version", type=int, help="a model version (default: the latest)")
    p.add_argument("--priority", choices=PRIORITIES, help="high, normal or low (default: the key's)")

    p = sub.add_parser("jobs", parents=[common], help="recent jobs, newest first")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "canceled", "aborted"])
    p.add_argument("--model")
    p.add_argument("--reason", help="an error code: poison_job lists the dead letters")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("job", parents=[common], help="one job")
    p.add_argument("id")
    p = sub.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    p.add_argument("id")
    p = sub.add_parser("retry", parents=[common], help="a failed or aborted job (a batch's failed items) as a new job")
    p.add_argument("id")

    keys = sub.add_parser("keys", parents=[common], help="API keys (made locally, no server needed)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    p = keys_sub.add_parser("create", parents=[common], help="a new key and its MLQUEUE_API_KEYS entry")
    p.add_argument("name", help="who the key is for (letters, digits, - and _)")
    p.add_argument("--scopes", default="submit,read", help="comma-separated: submit, read, admin")
    p.add_argument("--weight", help="its share of a busy queue against other keys (default 1)")
    p.add_argument("--priority", choices=PRIORITIES, help="default priority of its jobs (default normal)")
    p.add_argument("--max-priority", choices=PRIORITIES, help="the most it may ask for (default high)")
    return parser


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], ExitCode]] = {
    "models": cmd_models,
    "predict": cmd_predict,
    "batch": cmd_batch,
    "jobs": cmd_jobs,
    "job": cmd_job,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    args.url = getattr(args, "url", None)
    try:
        if args.command == "keys":
            return int(cmd_keys_create(args))
        with Client(args.url, getattr(args, "api_key", None)) as mlq:
            args.url = str(mlq._http.base_url)
            return int(COMMANDS[args.command](mlq, args))
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        return int(ExitCode.USAGE)
    except MlqueueError as exc:
        return int(_report(exc, args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
