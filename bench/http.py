"""A minimal asyncio HTTP/1.1 keep-alive client for the load generator (httptools parses responses).

Why not httpx for the load: measured on this 2-core machine, an ``httpx.AsyncClient`` spends about
1 ms of CPU per request at concurrency 1 and 2 ms at 64 (its connection pool), so against a no-op
endpoint the client alone saturates a core at ~500 requests/s, and it competes with the system
under test for the same two cores. This client spends a few tens of microseconds per request: it
sends prebuilt bytes on a pool of keep-alive connections (at most one request in flight on each,
no pipelining) and parses the answer with httptools (which uvicorn uses; pinned in
requirements/api.txt). ``HttpxClient`` offers the same calls over httpx (``--client httpx``), to
compare.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

if TYPE_CHECKING:  # imported where it is used: the raw client's processes never load httpx
    import httpx


class ClientError(Exception):
    """The connection failed or the answer was not HTTP."""


class Response:
    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:  # Any: whatever JSON the body holds, as json.loads gives it
        return json.loads(self.body)


class _Parser:
    """httptools callbacks: status, headers, body chunks (de-chunked), completion."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.done = False
        self.headers_done = False
        self._name = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False  # a reused keep-alive connection may have been closed by the server meanwhile

    def close(self) -> None:
        self.writer.close()


class Client:
    """``await client.post(path, content=..., headers=...)``; at most ``max_connections`` open."""

    def __init__(self, base_url: str, max_connections: int, timeout_s: float = 60) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.host_header = f"{self.host}:{self.port}".encode()
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def connect(self, n: int) -> None:
        """Open ``n`` keep-alive connections now, so a timed run does not pay for their set-up."""
        self._idle.extend(await asyncio.gather(*(self._connect() for _ in range(n))))

    def _encode(self, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host_header]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def request(
        self, method: str, path: str, content: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        raw = self._encode(method, path, content, headers)
        async with self._slots:
            for attempt in range(2):
                conn = self._idle.pop() if self._idle else await self._connect()
                try:
                    parser = await asyncio.wait_for(self._exchange(conn, raw, None), self.timeout_s)
                except (ConnectionError, ClientError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    # A keep-alive connection the server closed while idle: send again on a new one.
                    if attempt == 0 and conn.used and isinstance(exc, _ClosedBeforeAnswer):
                        continue
                    raise ClientError(f"{method} {path}: {exc!r}") from exc
                except BaseException:
                    conn.close()
                    raise
                self._release(conn, parser)
                return Response(parser.parser.get_status_code(), parser.headers, b"".join(parser.chunks))
        raise AssertionError("unreachable")

    async def post(self, path: str, content: bytes = b"", headers: dict[str, str] | None = None) -> Response:
        return await self.request("POST", path, content, headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", path, b"", headers)

    async def stream_lines(self, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[bytes]:
        """GET and yield the body line by line as it arrives (NDJSON)."""
        raw = self._encode("GET", path, b"", headers)
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            lines: asyncio.Queue[bytes | None] = asyncio.Queue()
            task = asyncio.ensure_future(self._exchange(conn, raw, lines))
            pending = b""
            try:
                while True:
                    chunk = await lines.get()
                    if chunk is None:
                        break
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        yield line
                if pending:
                    yield pending
                parser = await task
            except BaseException:
                task.cancel()
                conn.close()
                raise
            self._release(conn, parser)

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        return _Connection(reader, writer)

    def _release(self, conn: _Connection, parser: _Parser) -> None:
        conn.used = True
        if parser.parser.should_keep_alive():
            self._idle.append(conn)
        else:
            conn.close()

    async def _exchange(self, conn: _Connection, raw: bytes, sink: asyncio.Queue[bytes | None] | None) -> _Parser:
        parser = _Parser()
        conn.writer.write(raw)
        await conn.writer.drain()
        received = False
        while not parser.done:
            data = await conn.reader.read(2**18)
            if not data:
                if not received:
                    raise _ClosedBeforeAnswer("connection closed before any answer")
                raise ClientError("connection closed mid-answer")
            received = True
            try:
                parser.parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise ClientError(f"bad HTTP answer: {exc}") from exc
            if sink is not None and parser.chunks:
                for chunk in parser.chunks:
                    sink.put_nowait(chunk)
                parser.chunks.clear()
        if sink is not None:
            sink.put_nowait(None)
        return parser


class _ClosedBeforeAnswer(ClientError):
    pass


class HttpxClient:
    """The same calls over ``httpx.AsyncClient`` (HTTP/1.1 keep-alive, pool sized to the concurrency)."""

    def __init__(self, base_url: str, max_connections: int, timeout_s: float = 60) -> None:
        import httpx

        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s, http2=False)

    async def __aenter__(self) -> HttpxClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def connect(self, n: int) -> None:
        """httpx opens its connections on first use."""

    async def post(self, path: str, content: bytes = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        return await self._send("POST", path, content, headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self._send("GET", path, b"", headers)

    async def _send(self, method: str, path: str, content: bytes, headers: dict[str, str] | None) -> httpx.Response:
        import httpx

        try:
            return await self._http.request(method, path, content=content or None, headers=headers)
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {path}: {exc!r}") from exc

    async def stream_lines(self, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[bytes]:
        async with self._http.stream("GET", path, headers=headers) as response:
            async for line in response.aiter_lines():
                yield line.encode()
