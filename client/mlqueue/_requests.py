"""The requests the clients make, built in one place for the sync and the async client alike."""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mlqueue._http import Spec
from mlqueue._types import JsonValue

Image = str | Path | bytes
MAX_PREFER_WAIT_S = 60  # the server clamps to its MLQUEUE_MAX_WAIT_S anyway


def _options(
    version: int | None, webhook: str | None, webhook_events: Sequence[str] | None, priority: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if version is not None:
        body["version"] = version
    if priority is not None:
        body["priority"] = priority  # checked by the server (422 for a value not high/normal/low)
    if webhook is not None:
        body["webhook"] = webhook
    if webhook_events is not None:
        body["webhook_events_filter"] = list(webhook_events)
    return body


def _form(
    version: int | None, webhook: str | None, webhook_events: Sequence[str] | None, priority: str | None
) -> dict[str, str]:
    # Multipart carries the same options as form fields; the event filter comma-separated.
    form = {
        "version": str(version) if version is not None else None,
        "webhook": webhook,
        "priority": str(priority) if priority is not None else None,
    }
    if webhook_events is not None:
        form["webhook_events_filter"] = ",".join(webhook_events)
    return {k: v for k, v in form.items() if v is not None}


def _headers(wait: float, idempotency_key: str | None, cancel_after: str | None) -> dict[str, str]:
    # One key per call, reused by every retry of it: that is what makes retrying a POST safe.
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    if wait >= 1:
        headers["Prefer"] = f"wait={min(int(wait), MAX_PREFER_WAIT_S)}"
    if cancel_after is not None:
        headers["Cancel-After"] = cancel_after
    return headers


def _timeout(base: httpx.Timeout, wait: float) -> httpx.Timeout:
    # A held request (Prefer: wait) must not time out on our side before the server answers.
    read = None if base.read is None else base.read + min(wait, MAX_PREFER_WAIT_S)
    return httpx.Timeout(base.connect, read=read, write=base.write, pool=base.pool)


def image_file(image: Image) -> tuple[str, bytes, str]:
    """``(filename, bytes, content type)`` for multipart; the server sniffs the format itself."""
    if isinstance(image, bytes):
        return "image", image, "application/octet-stream"
    path = Path(image)
    return path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def is_image(item: object) -> bool:
    return isinstance(item, bytes | Path) or (isinstance(item, str) and Path(item).is_file())


@dataclass(frozen=True)
class Calls:
    timeout: httpx.Timeout

    def submit(
        self,
        model: str,
        input: JsonValue,
        *,
        wait: float,
        version: int | None,
        webhook: str | None,
        webhook_events: Sequence[str] | None,
        priority: str | None,
        cancel_after: str | None,
        idempotency_key: str | None,
    ) -> Spec:
        body = {"input": input, **_options(version, webhook, webhook_events, priority)}
        return Spec(
            "POST",
            f"/v1/models/{model}/jobs",
            {
                "json": body,
                "headers": _headers(wait, idempotency_key, cancel_after),
                "timeout": _timeout(self.timeout, wait),
            },
        )

    def submit_image(
        self,
        model: str,
        image: Image,
        *,
        wait: float,
        version: int | None,
        webhook: str | None,
        webhook_events: Sequence[str] | None,
        priority: str | None,
        cancel_after: str | None,
        idempotency_key: str | None,
    ) -> Spec:
        return Spec(
            "POST",
            f"/v1/models/{model}/jobs",
            {
                "files": {"file": image_file(image)},
                "data": _form(version, webhook, webhook_events, priority),
                "headers": _headers(wait, idempotency_key, cancel_after),
                "timeout": _timeout(self.timeout, wait),
            },
        )

    def batch(
        self,
        model: str,
        items: Iterable[JsonValue],
        *,
        version: int | None,
        webhook: str | None,
        webhook_events: Sequence[str] | None,
        priority: str | None,
        cancel_after: str | None,
        idempotency_key: str | None,
    ) -> Spec:
        items = list(items)
        options = _options(version, webhook, webhook_events, priority)
        headers = _headers(0, idempotency_key, cancel_after)
        if items and all(is_image(i) for i in items):
            files = [("files", image_file(i)) for i in items]
            data = _form(version, webhook, webhook_events, priority)
            return Spec("POST", f"/v1/models/{model}/batches", {"files": files, "data": data, "headers": headers})
        return Spec("POST", f"/v1/models/{model}/batches", {"json": {"inputs": items, **options}, "headers": headers})

    def job(self, job_id: str) -> Spec:
        return Spec("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> Spec:
        return Spec("POST", f"/v1/jobs/{job_id}/cancel")

    def retry(self, job_id: str) -> Spec:
        # Not idempotent (the server takes no Idempotency-Key here): resent only when it surely
        # did not arrive, or was refused (429, 503), never after a lost answer.
        return Spec("POST", f"/v1/jobs/{job_id}/retry", resend_after_send=False)

    def jobs(
        self, status: str | None, model: str | None, limit: int, cursor: str | None, reason: str | None = None
    ) -> Spec:
        query = {"status": status, "model": model, "limit": limit, "cursor": cursor, "reason": reason}
        params: Mapping[str, Any] = {k: v for k, v in query.items() if v}
        return Spec("GET", "/v1/jobs", {"params": params})

    def models(self) -> Spec:
        return Spec("GET", "/v1/models")

    def model(self, name: str) -> Spec:
        return Spec("GET", f"/v1/models/{name}")

    def events(self, job_id: str, read_timeout: float | None) -> Spec:
        base = self.timeout
        timeout = httpx.Timeout(base.connect, read=read_timeout, write=base.write, pool=base.pool)
        headers = {"Accept": "text/event-stream"}
        return Spec("GET", f"/v1/jobs/{job_id}/events", {"headers": headers, "timeout": timeout})

    def results(self, job_id: str) -> Spec:
        return Spec("GET", f"/v1/jobs/{job_id}/results", {"headers": {"Accept": "application/x-ndjson"}})
