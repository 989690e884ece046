"""A job as the API describes it, with the calls that act on it (sync ``Job``, async ``AsyncJob``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import aclosing, closing, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

from mlqueue._types import JsonValue
from mlqueue.errors import ConnectionFailed, StreamTimeout, WaitTimeout

if TYPE_CHECKING:
    from mlqueue.client import AsyncClient, Client

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted", "expired"})
# Between keep-alives (every 15 s) the server is silent; a read timeout longer than that means gone.
EVENTS_READ_TIMEOUT_S = 40.0


class Progress(NamedTuple):
    total: int
    done: int
    failed: int


class QueuePlace(NamedTuple):
    """Where a queued job stands: ``position`` 1 is the next to run in its model queue; ``eta_s``
    the seconds until it starts at the current drain rate (None while nothing drains)."""

    position: int
    eta_s: float | None


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: ``type`` is ``status``, ``progress`` or ``queue`` (a queued job's place
    in line moved); ``job`` the job at that moment."""

    type: str
    id: int | None
    job: dict[str, Any]


class SseParser:
    """Lines in, events out (only the fields the API sends: id, event, data; comments ignored)."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Event | None:
        if line.startswith(":"):
            return None
        if line:
            name, _, value = line.partition(":")
            self._fields[name] = value.removeprefix(" ")
            return None
        fields, self._fields = self._fields, {}
        if "data" not in fields:
            return None
        event_id = fields.get("id")
        return Event(fields.get("event", "message"), int(event_id) if event_id else None, json.loads(fields["data"]))


@contextmanager
def _stream_errors(what: str) -> Iterator[None]:
    # Failures after the answer began (a dropped connection, silence) are ours to name, as typed errors.
    try:
        yield
    except httpx.TimeoutException as exc:
        raise StreamTimeout(f"{what}: no data within the read timeout") from exc
    except httpx.TransportError as exc:
        raise ConnectionFailed(f"{what}: {exc!r}") from exc


class BaseJob:
    """The fields of a job; ``data`` holds the whole of the API's last answer."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.model} {self.status}>"

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def model(self) -> str:
        return str(self.data.get("model"))

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "single"))

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def output(self) -> JsonValue:
        return self.data.get("output")

    @property
    def error(self) -> dict[str, Any] | None:
        return self.data.get("error")

    @property
    def progress(self) -> Progress | None:
        p = self.data.get("progress")
        return Progress(p["total"], p["done"], p["failed"]) if p else None

    @property
    def priority(self) -> str:
        return str(self.data.get("priority", "normal"))

    @property
    def retry_of(self) -> str | None:
        """The id of the job this one re-runs (made by ``retry``)."""
        return self.data.get("retry_of")

    @property
    def queue(self) -> QueuePlace | None:
        """Its place in line while it is queued (from the last answer or event), else None."""
        q = self.data.get("queue")
        return QueuePlace(q["position"], q.get("eta_s")) if q and self.status == "queued" else None


class Job(BaseJob):
    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._client = client

    def refresh(self) -> Job:
        self.data = self._client._call(self._client._calls.job(self.id)).json()
        return self

    def cancel(self) -> Job:
        self.data = self._client._call(self._client._calls.cancel(self.id)).json()
        return self

    def retry(self) -> Job:
        """This failed or aborted job run again, as a new ``Job`` (this one is left as it was)."""
        return self._client.retry(self.id)

    def events(self, read_timeout: float | None = EVENTS_READ_TIMEOUT_S) -> Generator[Event, None, None]:
        """The job now, then each status and progress change (and, while it waits, each move of its
        place in line: ``queue`` events); ends when the job finishes."""
        parser = SseParser()
        spec = self._client._calls.events(self.id, read_timeout)
        with self._client._stream(spec) as response, _stream_errors(f"events of {self.id}"):
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    self.data = event.job
                    yield event

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job finishes (on its events, not by polling); ``WaitTimeout`` if it does not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(self, timeout or 0)
            try:
                read_timeout = min(remaining or EVENTS_READ_TIMEOUT_S, EVENTS_READ_TIMEOUT_S)
                with closing(self.events(read_timeout=read_timeout)) as events:
                    for event in events:
                        if event.job.get("status") in TERMINAL:  # events() has just made it self.data
                            break
            except StreamTimeout:
                continue  # no news within the read timeout: check the deadline, then listen again
        return self

    def results(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """A batch's items in input order (``{"index", "status", "output" | "error"}``), streamed as
        NDJSON once the batch has finished (waiting for it up to ``timeout``)."""
        self.wait(timeout)
        with self._client._stream(self._client._calls.results(self.id)) as response, _stream_errors(self.id):
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


class AsyncJob(BaseJob):
    def __init__(self, client: AsyncClient, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._client = client

    async def refresh(self) -> AsyncJob:
        self.data = (await self._client._call(self._client._calls.job(self.id))).json()
        return self

    async def cancel(self) -> AsyncJob:
        self.data = (await self._client._call(self._client._calls.cancel(self.id))).json()
        return self

    async def retry(self) -> AsyncJob:
        return await self._client.retry(self.id)

    async def events(self, read_timeout: float | None = EVENTS_READ_TIMEOUT_S) -> AsyncGenerator[Event, None]:
        parser = SseParser()
        spec = self._client._calls.events(self.id, read_timeout)
        async with self._client._stream(spec) as response:
            with _stream_errors(f"events of {self.id}"):
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        self.data = event.job
                        yield event

    async def wait(self, timeout: float | None = None) -> AsyncJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(self, timeout or 0)
            try:
                read_timeout = min(remaining or EVENTS_READ_TIMEOUT_S, EVENTS_READ_TIMEOUT_S)
                async with aclosing(self.events(read_timeout=read_timeout)) as events:
                    async for event in events:
                        if event.job.get("status") in TERMINAL:
                            break
            except StreamTimeout:
                continue
        return self

    async def results(self, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        await self.wait(timeout)
        async with self._client._stream(self._client._calls.results(self.id)) as response:
            with _stream_errors(self.id):
                async for line in response.aiter_lines():
                    if line:
                        yield json.loads(line)
