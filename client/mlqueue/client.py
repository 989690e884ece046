"""``Client`` and ``AsyncClient``: the same methods, one blocking, one ``async``."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from mlqueue._http import RetryPolicy, Spec, asend, send
from mlqueue._requests import Calls, Image
from mlqueue._types import JsonValue
from mlqueue._version import __version__
from mlqueue.errors import JobFailed
from mlqueue.jobs import AsyncJob, Job

DEFAULT_URL = "http://localhost:8000"


def _settings(url: str | None, api_key: str | None, timeout: float) -> tuple[str, dict[str, str], httpx.Timeout]:
    # Arguments win; then MLQUEUE_URL / MLQUEUE_API_KEY, as the CLI documents.
    url = url or os.environ.get("MLQUEUE_URL") or DEFAULT_URL
    api_key = api_key or os.environ.get("MLQUEUE_API_KEY") or None
    headers = {"User-Agent": f"mlqueue-client/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return url, headers, httpx.Timeout(timeout)


class Client:
    """``Client(url, api_key)``; without them, ``$MLQUEUE_URL`` (else localhost:8000) and ``$MLQUEUE_API_KEY``.

    ``retries``: how often a 429, a 503 or a connection error is retried (after its Retry-After, when
    the API gives one of at most a minute; a longer one is raised at once, as ``.retry_after``).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base_url, headers, http_timeout = _settings(url, api_key, timeout)
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=http_timeout, transport=transport)
        self._calls = Calls(http_timeout)
        self._policy = RetryPolicy(retries=retries)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, spec: Spec) -> httpx.Response:
        return send(self._http, self._policy, spec)

    @contextmanager
    def _stream(self, spec: Spec) -> Iterator[httpx.Response]:
        response = send(self._http, self._policy, spec, stream=True)
        try:
            yield response
        finally:
            response.close()

    # Models
    def models(self) -> list[dict[str, Any]]:
        return list(self._call(self._calls.models()).json()["models"])

    def model(self, name: str) -> dict[str, Any]:
        return dict(self._call(self._calls.model(name)).json())

    # Jobs
    def submit(
        self,
        model: str,
        input: JsonValue,
        *,
        wait: float = 0,
        version: int | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue one prediction; ``wait`` holds the request up to that many seconds (``Prefer: wait``).

        ``priority``: ``"high"``, ``"normal"`` or ``"low"`` (default: the API key's); above the key's
        ceiling the API answers 403 ``priority_not_allowed`` (``Forbidden``), an unknown value 422."""
        spec = self._calls.submit(
            model,
            input,
            wait=wait,
            version=version,
            webhook=webhook,
            webhook_events=webhook_events,
            priority=priority,
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
        )
        return Job(self, self._call(spec).json())

    def submit_image(
        self,
        model: str,
        image: Image,
        *,
        wait: float = 0,
        version: int | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue one image (a path or the file's bytes) for an image model."""
        spec = self._calls.submit_image(
            model,
            image,
            wait=wait,
            version=version,
            webhook=webhook,
            webhook_events=webhook_events,
            priority=priority,
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
        )
        return Job(self, self._call(spec).json())

    def predict(
        self,
        model: str,
        input: JsonValue,
        *,
        wait: float = 60,
        version: int | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
    ) -> JsonValue:
        """The output, waiting up to ``wait`` seconds (else ``WaitTimeout``); ``JobFailed`` (with
        ``.job``) if it ended failed, canceled or aborted."""
        started = time.monotonic()
        job = self.submit(model, input, wait=wait, version=version, priority=priority, cancel_after=cancel_after)
        return _finished(job, wait, started)

    def predict_image(
        self,
        model: str,
        image: Image,
        *,
        wait: float = 60,
        version: int | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
    ) -> JsonValue:
        started = time.monotonic()
        job = self.submit_image(model, image, wait=wait, version=version, priority=priority, cancel_after=cancel_after)
        return _finished(job, wait, started)

    def batch(
        self,
        model: str,
        rows_or_files: Iterable[JsonValue],
        *,
        version: int | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """One batch job: rows (lists or dicts of features), or image paths / bytes (sent as files)."""
        spec = self._calls.batch(
            model,
            rows_or_files,
            version=version,
            webhook=webhook,
            webhook_events=webhook_events,
            priority=priority,
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
        )
        return Job(self, self._call(spec).json())

    def job(self, job_id: str) -> Job:
        return Job(self, self._call(self._calls.job(job_id)).json())

    def cancel(self, job_id: str) -> Job:
        return Job(self, self._call(self._calls.cancel(job_id)).json())

    def retry(self, job_id: str) -> Job:
        """Run a ``failed`` or ``aborted`` job again (a batch: its items that did not succeed) as a new
        job, whose ``retry_of`` is ``job_id``; ``Conflict`` (``job_not_retryable``,
        ``input_unavailable``) otherwise."""
        return Job(self, self._call(self._calls.retry(job_id)).json())

    def jobs(
        self, *, status: str | None = None, model: str | None = None, reason: str | None = None, limit: int = 20
    ) -> list[Job]:
        """The newest ``limit`` jobs this key can see, following ``next_cursor`` across pages;
        ``reason``: only those whose error has this code (``"poison_job"``: the dead letters)."""
        jobs: list[Job] = []
        cursor: str | None = None
        while len(jobs) < limit:
            page = self._call(self._calls.jobs(status, model, min(limit - len(jobs), 100), cursor, reason)).json()
            jobs.extend(Job(self, j) for j in page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor or not page["jobs"]:
                break
        return jobs


def _finished(job: Job, wait: float, started: float) -> JsonValue:
    if not job.done:
        job.wait(max(0.0, wait - (time.monotonic() - started)))
    if not job.succeeded:
        raise JobFailed(job)
    return job.output


async def _afinished(job: AsyncJob, wait: float, started: float) -> JsonValue:
    if not job.done:
        await job.wait(max(0.0, wait - (time.monotonic() - started)))
    if not job.succeeded:
        raise JobFailed(job)
    return job.output


class AsyncClient:
    """``Client``'s methods as coroutines, on ``httpx.AsyncClient``; ``async with AsyncClient(...)``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base_url, headers, http_timeout = _settings(url, api_key, timeout)
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=http_timeout, transport=transport)
        self._calls = Calls(http_timeout)
        self._policy = RetryPolicy(retries=retries)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, spec: Spec) -> httpx.Response:
        return await asend(self._http, self._policy, spec)

    @asynccontextmanager
    async def _stream(self, spec: Spec) -> AsyncIterator[httpx.Response]:
        response = await asend(self._http, self._policy, spec, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def models(self) -> list[dict[str, Any]]:
        return list((await self._call(self._calls.models())).json()["models"])

    async def model(self, name: str) -> dict[str, Any]:
        return dict((await self._call(self._calls.model(name))).json())

    async def submit(
        self,
        model: str,
        input: JsonValue,
        *,
        wait: float = 0,
        version: int | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        spec = self._calls.submit(
            model,
            input,
            wait=wait,
            version=version,
            webhook=webhook,
            webhook_events=webhook_events,
            priority=priority,
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
        )
        return AsyncJob(self, (await self._call(spec)).json())

    async def submit_image(
        self,
        model: str,
        image: Image,
        *,
        wait: float = 0,
        version: int | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        spec = self._calls.submit_image(
            model,
            image,
            wait=wait,
            version=version,
            webhook=webhook,
            webhook_events=webhook_events,
            priority=priority,
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
        )
        return AsyncJob(self, (await self._call(spec)).json())

    async def predict(
        self,
        model: str,
        input: JsonValue,
        *,
        wait: float = 60,
        version: int | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
    ) -> JsonValue:
        started = time.monotonic()
        job = await self.submit(model, input, wait=wait, version=version, priority=priority, cancel_after=cancel_after)
        return await _afinished(job, wait, started)

    async def predict_image(
        self,
        model: str,
        image: Image,
        *,
        wait: float = 60,
        version: int | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
    ) -> JsonValue:
        started = time.monotonic()
        job = await self.submit_image(
            model, image, wait=wait, version=version, priority=priority, cancel_after=cancel_after
        )
        return await _afinished(job, wait, started)

    async def batch(
        self,
        model: str,
        rows_or_files: Iterable[JsonValue],
        *,
        version: int | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
        priority: str | None = None,
        cancel_after: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        spec = self._calls.batch(
            model,
            rows_or_files,
            version=version,
            webhook=webhook,
            webhook_events=webhook_events,
            priority=priority,
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
        )
        return AsyncJob(self, (await self._call(spec)).json())

    async def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, (await self._call(self._calls.job(job_id))).json())

    async def cancel(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, (await self._call(self._calls.cancel(job_id))).json())

    async def retry(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, (await self._call(self._calls.retry(job_id))).json())

    async def jobs(
        self, *, status: str | None = None, model: str | None = None, reason: str | None = None, limit: int = 20
    ) -> list[AsyncJob]:
        jobs: list[AsyncJob] = []
        cursor: str | None = None
        while len(jobs) < limit:
            spec = self._calls.jobs(status, model, min(limit - len(jobs), 100), cursor, reason)
            page = (await self._call(spec)).json()
            jobs.extend(AsyncJob(self, j) for j in page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor or not page["jobs"]:
                break
        return jobs
