"""A webhook receiver for tests: a threaded HTTP server on 127.0.0.1 that records every request and
answers as told (status, delay, redirect)."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] | None = None


class Receiver:
    """``reply`` decides the answer for each request (default: 200 at once)."""

    def __init__(
        self, port: int = 0, reply: Callable[[Received], Reply] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.requested_port = port
        self.tls = tls  # serve HTTPS with this server-side context
        self.reply = reply or (lambda req: Reply())
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                with receiver._lock:
                    receiver.requests.append(req)
                answer = receiver.reply(req)
                if answer.delay_s and receiver._closing.wait(answer.delay_s):
                    return
                self.send_response(answer.status)
                for name, value in (answer.headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = _handle
            do_GET = _handle

            def log_message(self, *args: object) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (ConnectionError, TimeoutError):
                    self.close_connection = True  # the client gave up (timeout test): not an error

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._closing.clear()
        self._server = Server(("127.0.0.1", self.requested_port), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BlackHole:
    """A port that accepts TCP connections (into the kernel's backlog) and never answers: the
    worst kind of dead receiver, each attempt waits for its full timeout."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)

    def close(self) -> None:
        self.sock.close()
