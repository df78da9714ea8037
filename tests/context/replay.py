"""A local HTTP replay server for the daily-source tests (127.0.0.1, free port, a thread).

Routes map a path (exact, or a prefix ending in ``/``) to a handler that gets the request and
returns a :class:`Reply`. Every request is recorded (path, query, headers, arrival time) so tests
can assert what the clients sent. Handlers may ask for a delay (timeouts) or any status and
headers (429 with ``Retry-After``, 5xx, documented error bodies).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic() on arrival


@dataclass
class Reply:
    """What to answer."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @property
    def data(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


Handler = Callable[[Request], Reply]


def json_reply(text: str | bytes, status: int = 200, **headers: str) -> Reply:
    """A JSON reply (content type as the APIs send it)."""
    return Reply(status, text, {"Content-Type": "application/json; charset=UTF-8", **headers})


class ReplayServer:
    """Threaded HTTP server with a route table and a request log."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                req = Request(
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    time.monotonic(),
                )
                with server._lock:
                    server.requests.append(req)
                reply = server._dispatch(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.data
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, path: str, handler: Handler | Reply) -> None:
        """Serve ``path`` (a trailing ``/`` makes it a prefix) with a handler or a fixed reply."""
        if isinstance(handler, Reply):
            fixed = handler

            def serve_fixed(_req: Request) -> Reply:
                return fixed

            self.routes[path] = serve_fixed
        else:
            self.routes[path] = handler

    def sequence(self, path: str, replies: list[Reply]) -> None:
        """Serve ``replies`` in turn on ``path`` (the last one repeats)."""
        state = {"i": 0}

        def handler(_req: Request) -> Reply:
            i = min(state["i"], len(replies) - 1)
            state["i"] += 1
            return replies[i]

        self.route(path, handler)

    def hits(self, prefix: str = "") -> list[Request]:
        """Recorded requests whose path starts with ``prefix``."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def _dispatch(self, req: Request) -> Reply:
        handler = self.routes.get(req.path)
        if handler is None:
            prefixes = [p for p in self.routes if p.endswith("/") and req.path.startswith(p)]
            if prefixes:
                handler = self.routes[max(prefixes, key=len)]
        if handler is None:
            return Reply(404, b"no route", {"Content-Type": "text/plain"})
        try:
            return handler(req)
        except Exception as exc:  # a broken handler is a 500, visible in the test
            return Reply(500, f"handler error: {exc!r}".encode(), {"Content-Type": "text/plain"})
