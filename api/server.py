"""The uvicorn server of the API, configured in one place (``python -m api``: make run, compose, tests).

uvicorn's httptools protocol (the fast one, picked when httptools is installed) bounds neither the
time a client may take to send its request head nor its size: a connection that never sends a
byte stays open for ever, a head trickled a byte at a time is never cut off, and a 32 MB header
block is accepted. ``timeout_keep_alive`` only runs *between* requests, and
``h11_max_incomplete_event_size`` only applies to the slower h11 protocol. ``GuardedHttpTools``
adds both bounds to httptools:

- the head deadline (``MLQUEUE_HEADER_TIMEOUT_S``): from the connection's opening, or the first
  byte of a later request on it, to the end of the head; past it the connection is closed (408
  if part of a head had arrived);
- the head cap (``MLQUEUE_MAX_HEADER_BYTES``): request line + headers; past it 431 and close.

Slow bodies are bounded where they are read (``api.body``), since only the route knows it wants one.
"""

from __future__ import annotations

import asyncio
import json

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.errors import ErrorCode
from shared.settings import Settings


class _HeadTooLarge(Exception):
    pass


class GuardedHttpTools(HttpToolsProtocol):
    """httptools with a deadline and a size cap on each request head. Subclassed per server by
    ``guarded_protocol`` (uvicorn builds protocols itself, so the limits travel as class attributes)."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 32 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_too_large = False
        self._head_started = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()  # a client that connects and sends nothing is cut off too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_started = True
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        self._head_started = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # httptools wraps our callback's exception in a parser error, which uvicorn answers with 400.
        if self._head_too_large:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                ErrorCode.HEADERS_TOO_LARGE,
                f"the request line and headers exceed {self.max_header_bytes} bytes",
            )
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self._refuse(
                408,
                "Request Timeout",
                ErrorCode.HEADER_TIMEOUT,
                f"the request head did not arrive within {self.header_timeout_s:g} s",
            )
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: str, code: ErrorCode, detail: str) -> None:
        body = json.dumps({"detail": detail, "code": code}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedHttpTools]:
    return type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {"header_timeout_s": settings.header_timeout_s, "max_header_bytes": settings.max_header_bytes},
    )


def trusted_proxies(settings: Settings) -> list[str]:
    return [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]


def server_config(settings: Settings) -> uvicorn.Config:
    """Every launcher's uvicorn settings."""
    proxies = trusted_proxies(settings)
    return uvicorn.Config(
        "api.main:app",
        host=settings.api_host,
        port=settings.api_port,
        http=guarded_protocol(settings),
        log_config=None,
        access_log=False,
        # X-Forwarded-For/-Proto are believed only from these peers; with none, never (uvicorn's own
        # default trusts 127.0.0.1, so any local client could pick its rate-limit identity).
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=10,
    )
