"""A real HTTP server on 127.0.0.1 (a free port) in a background thread: the base of the local
Mautic and HubSpot API servers the push tests run against (tests/mautic_server.py,
tests/hubspot_server.py).

A subclass answers `handle(method, target, headers, raw)` with (status, body, extra headers):
a body that is text is sent as an HTML page (what a proxy answers), anything else as JSON.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    """One request as the server received it, and the status it answered."""

    method: str
    path: str  # without the query string
    query: dict[str, str]  # last value of each query parameter
    json: Any  # the parsed JSON body, or None (no body, or not JSON)
    headers: dict[str, str]
    status: int = 0


def recorded(method: str, target: str, headers: dict[str, str], raw: bytes | None) -> tuple[Recorded, bool]:
    """The request as recorded, and whether its body (if any) was JSON."""
    split = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    body, parsed = None, True
    if raw:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed = False
    return Recorded(method, urllib.parse.unquote(split.path), query, body, headers), parsed


class LocalHttpServer:
    """Start with `with Server() as server:` (or start()/stop()); `server.url` is its base URL."""

    thread_name = "local-http-server"

    def __init__(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def handle(self, method: str, target: str, headers: dict[str, str],
               raw: bytes | None) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def start(self) -> LocalHttpServer:
        if self._thread is None:
            # a short poll: shutdown() waits up to one poll interval (0.5 s by default), at every test's teardown
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                            name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _length(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def _handler(server: LocalHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = _length(self.headers.get("Content-Length"))
            raw = self.rfile.read(length) if length else None
            status, answer, extra = server.handle(self.command, self.path, dict(self.headers.items()), raw)
            data = (answer if isinstance(answer, str) else json.dumps(answer)).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler
