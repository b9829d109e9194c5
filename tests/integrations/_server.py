"""A small HTTP/1.1 server on 127.0.0.1 for the client integration tests."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TIMEOUT = 5.0
STREAM_SIZE = 256 * 1024  # several reads on any client


class _Handler(BaseHTTPRequestHandler):
    """Answers:

    * ``/status/<code>``: that status;
    * ``/redirect``: 302 to ``/ok``;
    * ``/short``: 200 announcing 10 bytes, sending 2, then closing (a broken body);
    * ``/stream``: 200 with :data:`STREAM_SIZE` bytes;
    * anything else: 200 ``ok``.
    """

    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True  # headers and body are separate writes

    def do_GET(self) -> None:
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            self.rfile.read(length)
        self.server.received.append(  # type: ignore[attr-defined]
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        path = self.path.split('?', 1)[0]
        if path.startswith('/status/'):
            self._reply(int(path.rsplit('/', 1)[1]))
        elif path == '/redirect':
            self._reply(302, headers={'Location': '/ok'})
        elif path == '/short':
            self.send_response(200)
            self.send_header('Content-Length', '10')
            self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(b'ok')
            self.wfile.flush()
            self.close_connection = True
        elif path == '/stream':
            self._reply(200, b'x' * STREAM_SIZE)
        else:
            self._reply(200)

    do_POST = do_DELETE = do_HEAD = do_GET

    def _reply(self, status: int, body: bytes = b'ok', headers: Any = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes a body it did not read breaks our write: expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve() -> Iterator[ThreadingHTTPServer]:
    """Run the server on a free port until the block exits."""
    httpd = _Server(('127.0.0.1', 0), _Handler)
    httpd.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)
