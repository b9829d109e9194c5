"""A small, real Zipkin v2 API receiver for tests and demos (not for production).

:class:`ZipkinCollector` speaks enough of Zipkin's v2 HTTP API for a test to send spans
the way production does and then look at them the way the Zipkin UI would:

* ``POST /api/v2/spans`` takes a JSON array (``Content-Type: application/json``,
  optionally ``Content-Encoding: gzip``), checks **every** span with
  :func:`~falcon_tracing_wsgi.zipkin.schema.validate_span` and answers ``202`` - or
  ``400`` with the errors, storing nothing, the way Zipkin refuses a bad payload.
* ``GET /api/v2/services``, ``GET /api/v2/spans?serviceName=``, ``GET /api/v2/traces``
  (``serviceName``, ``spanName``, ``limit``; newest first) and ``GET /api/v2/trace/{id}``
  answer from memory.

Design: a :class:`http.server.ThreadingHTTPServer` (HTTP/1.1 keep-alive, so a sender's
connection reuse can be observed) on ``127.0.0.1`` and a free port by default, served
from a daemon thread. Tests synchronise through :meth:`ZipkinCollector.wait_for_spans`
and :meth:`ZipkinCollector.wait_for_requests`, which wait on a condition (no polling).
:meth:`ZipkinCollector.stop` is bounded: it releases hanging requests, shuts down open
keep-alive connections and joins the server thread with a timeout.

Fault injection, for reliability tests (:meth:`ZipkinCollector.set_fault`), applies to
``POST /api/v2/spans`` only, so queries keep working:

* ``status=503``: read the request, store nothing, answer that status;
* ``delay=2.0``: wait that long before handling the request normally;
* ``hang=True``: read the request and never answer; when the fault is cleared or the
  collector stops, the connection is closed without a response and nothing is stored
  (the client has most likely given up and will retry, so storing would duplicate).

Run it in the foreground (the demo does)::

    python -m falcon_tracing_wsgi.zipkin.collector --port 9411 [--jsonl spans.jsonl]

It prints its URL, then the running span count after every accepted batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import ssl
import sys
import threading
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .schema import validate_spans

__all__ = ['ZipkinCollector']

_log = logging.getLogger(__name__)

_SPANS_PATH = '/api/v2/spans'
_MAX_BODY = 32 * 1024 * 1024
_MAX_ERRORS_SHOWN = 50
_HANG_LIMIT = 300.0  # a forgotten hang still ends
_IDLE_TIMEOUT = 30.0  # seconds an idle keep-alive connection may stay open
_HEADER_LOG_SIZE = 1000


def _reject_constant(name: str) -> Any:
    raise ValueError(f'{name} is not valid JSON')


class _Fault:
    __slots__ = ('status', 'delay', 'hang')

    def __init__(self, status: Optional[int] = None, delay: float = 0.0,
                 hang: bool = False) -> None:
        self.status = status
        self.delay = delay
        self.hang = hang


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    collector: ZipkinCollector

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or fails the TLS handshake is normal in tests; the
        # default prints a traceback to stderr.
        _log.debug('collector: error serving %s', client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = _IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.collector._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.collector._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug('collector: ' + format, *args)

    def _reply(self, status: int, body: Any = b'', content_type: str = 'text/plain') -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            content_type = 'application/json'
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        collector = self.server.collector
        if urlsplit(self.path).path != _SPANS_PATH:
            if self._read_body() is not None:  # None: it was answered already
                self._reply(404, b'not found')
            return
        body = self._read_body()
        if body is None:
            return
        fault = collector._begin_request(dict(self.headers.items()))
        if fault.hang:
            collector._hang()
            self.close_connection = True
            return
        if fault.delay:
            collector._stopping.wait(fault.delay)
        if fault.status is not None:
            collector._finish_request(rejected=False)
            self._reply(fault.status, b'injected fault')
            return
        status, answer = collector._accept(body, self.headers)
        self._reply(status, answer)

    def _read_body(self) -> Optional[bytes]:
        length = self.headers.get('Content-Length')
        if length is None or not length.isdigit():
            self.close_connection = True
            self._reply(411, b'Content-Length required')
            return None
        size = int(length)
        if size > _MAX_BODY:
            self.close_connection = True
            self._reply(413, b'body too large')
            return None
        body = self.rfile.read(size)
        if size > self.server.collector.max_body_bytes:
            # Read first, then refuse, as real collectors and proxies do: a client still
            # sending would otherwise see a reset connection instead of the answer.
            self._reply(413, b'body too large')
            return None
        return body

    def do_GET(self) -> None:
        status, answer = self.server.collector._query(self.path)
        self._reply(status, answer)


class ZipkinCollector:
    """An in-process Zipkin v2 collector on a free port.

    Args:
        host: the address to bind (default ``127.0.0.1``).
        port: the port to bind; ``0`` picks a free one (see :attr:`url`).
        jsonl: a file path to which every accepted span is appended as one JSON line.
        max_spans: the most spans kept in memory (the oldest go first).
        on_spans: called with each accepted batch (a list of span dicts), on the
            server's thread; the command-line mode prints counts with it.
        ssl_context: serve https with this server-side context (for TLS tests).
        max_body_bytes: a larger request body is answered ``413 Payload Too Large``,
            like a real collector's request size limit.

    Use it as a context manager (``with ZipkinCollector() as collector:``) or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, host: str = '127.0.0.1', port: int = 0, *,
                 jsonl: Optional[str] = None, max_spans: int = 100_000,
                 on_spans: Optional[Callable[[list[dict[str, Any]]], None]] = None,
                 ssl_context: Optional[ssl.SSLContext] = None,
                 max_body_bytes: int = _MAX_BODY) -> None:
        self.host = host
        self.max_body_bytes = max_body_bytes
        self._ssl_context = ssl_context
        self.port = port
        self._jsonl = jsonl
        self._on_spans = on_spans
        self._spans: deque[dict[str, Any]] = deque(maxlen=max_spans)
        self._cond = threading.Condition()
        self._fault = _Fault()
        self._stopping = threading.Event()
        self._requests = 0
        self._rejected = 0
        self._accepted_spans = 0
        self._connections = 0
        self._headers: deque[dict[str, str]] = deque(maxlen=_HEADER_LOG_SIZE)
        self._open: set[socket.socket] = set()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> ZipkinCollector:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        if self._ssl_context is not None:
            # The handshake happens on the handler's thread (first read), not in accept().
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False)
        server.collector = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name='zipkin-collector', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: release hanging requests, close connections, join the thread."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        with self._cond:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:  # wakes handler threads blocked reading an idle keep-alive connection
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ZipkinCollector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The ``POST`` endpoint: ``http://127.0.0.1:<port>/api/v2/spans``."""
        return self.base_url + _SPANS_PATH

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the Zipkin UI's base); https with TLS."""
        host = f'[{self.host}]' if ':' in self.host else self.host
        scheme = 'http' if self._ssl_context is None else 'https'
        return f'{scheme}://{host}:{self.port}'

    # -- what tests read --------------------------------------------------------------------

    def spans(self) -> list[dict[str, Any]]:
        """A copy of the stored spans, in arrival order."""
        with self._cond:
            return list(self._spans)

    def wait_for_spans(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` spans are stored; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._spans) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` POSTs to the spans endpoint arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: self._requests >= count, timeout)

    def clear(self) -> None:
        """Forget stored spans, counters and recorded headers."""
        with self._cond:
            self._spans.clear()
            self._headers.clear()
            self._requests = self._rejected = self._accepted_spans = 0
            self._connections = len(self._open)

    def request_headers(self) -> list[dict[str, str]]:
        """The headers of the POSTs received (the most recent 1000)."""
        with self._cond:
            return list(self._headers)

    @property
    def request_count(self) -> int:
        """POSTs to the spans endpoint, including rejected and faulted ones."""
        return self._requests

    @property
    def rejected_count(self) -> int:
        """POSTs answered 400/415 because the payload was invalid."""
        return self._rejected

    @property
    def connection_count(self) -> int:
        """TCP connections accepted (keep-alive reuse keeps this low)."""
        return self._connections

    def set_fault(self, status: Optional[int] = None, delay: float = 0.0,
                  hang: bool = False) -> None:
        """Make ``POST /api/v2/spans`` misbehave; ``set_fault()`` clears it.

        Args:
            status: answer this status and store nothing.
            delay: wait this many seconds before answering.
            hang: never answer (until cleared or stopped; then close the connection).
        """
        with self._cond:
            self._fault = _Fault(status, delay, hang)
            self._cond.notify_all()

    # -- server side ------------------------------------------------------------------------

    def _track(self, sock: socket.socket, opened: bool) -> None:
        with self._cond:
            if opened:
                self._open.add(sock)
                self._connections += 1
            else:
                self._open.discard(sock)

    def _begin_request(self, headers: dict[str, str]) -> _Fault:
        with self._cond:
            self._requests += 1
            self._headers.append(headers)
            self._cond.notify_all()
            return self._fault

    def _finish_request(self, rejected: bool) -> None:
        if rejected:
            with self._cond:
                self._rejected += 1

    def _hang(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._fault.hang or self._stopping.is_set(),
                                _HANG_LIMIT)

    def _accept(self, body: bytes, headers: Any) -> tuple[int, Any]:
        content_type = headers.get('Content-Type', 'application/json')
        if content_type.split(';', 1)[0].strip().lower() != 'application/json':
            self._finish_request(rejected=True)
            return 415, f'unsupported Content-Type {content_type!r}'.encode()
        encoding = headers.get('Content-Encoding', 'identity').strip().lower()
        if encoding == 'gzip':
            try:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(body, _MAX_BODY)
                if inflater.unconsumed_tail or not inflater.eof:
                    raise ValueError('truncated or too large')
            except (zlib.error, ValueError) as exc:
                self._finish_request(rejected=True)
                return 400, f'bad gzip body: {exc}'.encode()
        elif encoding != 'identity':
            self._finish_request(rejected=True)
            return 415, f'unsupported Content-Encoding {encoding!r}'.encode()
        try:
            spans = json.loads(body.decode('utf-8'), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            self._finish_request(rejected=True)
            return 400, f'body is not JSON: {exc}'.encode()
        errors = validate_spans(spans)
        if errors:
            self._finish_request(rejected=True)
            shown = errors[:_MAX_ERRORS_SHOWN]
            if len(errors) > len(shown):
                shown.append(f'... and {len(errors) - len(shown)} more errors')
            return 400, '\n'.join(shown).encode()
        with self._cond:
            self._spans.extend(spans)
            self._accepted_spans += len(spans)
            if self._jsonl is not None:
                with open(self._jsonl, 'a', encoding='utf-8') as out:
                    out.writelines(json.dumps(span, separators=(',', ':')) + '\n'
                                   for span in spans)
            self._cond.notify_all()
        if self._on_spans is not None:
            self._on_spans(spans)
        return 202, b''

    def _query(self, target: str) -> tuple[int, Any]:
        parts = urlsplit(target)
        path = parts.path
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        spans = self.spans()
        if path == '/api/v2/services':
            return 200, sorted({_service(span) for span in spans} - {None})
        if path == _SPANS_PATH:
            service = query.get('serviceName')
            if not service:
                return 400, b'serviceName is required'
            return 200, sorted({span.get('name', '') for span in spans
                                if _service(span) == service.lower()})
        if path == '/api/v2/traces':
            return self._traces(spans, query)
        if path.startswith('/api/v2/trace/'):
            trace_id = unquote(path[len('/api/v2/trace/'):]).lower()
            if not (16 <= len(trace_id) <= 32 and all(c in '0123456789abcdef'
                                                      for c in trace_id)):
                return 400, b'traceId must be 16 to 32 hex characters'
            found = _sorted_trace([s for s in spans if s['traceId'] == trace_id])
            return (200, found) if found else (404, b'trace not found')
        return 404, b'not found'

    @staticmethod
    def _traces(spans: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, Any]:
        try:
            limit = int(query.get('limit', '10'))
        except ValueError:
            return 400, b'limit must be an integer'
        service = query.get('serviceName', '').lower()
        name = query.get('spanName', '').lower()
        traces: dict[str, list[dict[str, Any]]] = {}
        for span in spans:
            traces.setdefault(span['traceId'], []).append(span)
        selected = []
        for trace in traces.values():
            if service and not any(_service(s) == service for s in trace):
                continue
            if name and not any(s.get('name', '').lower() == name for s in trace):
                continue
            selected.append(_sorted_trace(trace))
        selected.sort(key=lambda t: max(s.get('timestamp', 0) for s in t), reverse=True)
        return 200, selected[:max(limit, 0)]


def _service(span: dict[str, Any]) -> Optional[str]:
    name = span.get('localEndpoint', {}).get('serviceName')
    return name.lower() if isinstance(name, str) else None


def _sorted_trace(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(trace, key=lambda s: s.get('timestamp', 0))


def _main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m falcon_tracing_wsgi.zipkin.collector',
        description='A small Zipkin v2 collector for demos and tests.')
    parser.add_argument('--host', default='127.0.0.1', help='address to bind (127.0.0.1)')
    parser.add_argument('--port', type=int, default=9411, help='port (9411; 0 = any free)')
    parser.add_argument('--jsonl', default=None, help='append received spans to this file')
    args = parser.parse_args(argv)

    total = [0]
    lock = threading.Lock()

    def on_spans(spans: list[dict[str, Any]]) -> None:
        with lock:
            total[0] += len(spans)
            sys.stdout.write(f'spans: {total[0]} (+{len(spans)})\n')
            sys.stdout.flush()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    collector = ZipkinCollector(args.host, args.port, jsonl=args.jsonl, on_spans=on_spans)
    try:
        collector.start()
    except OSError as exc:
        sys.stderr.write(f'cannot listen on {args.host}:{args.port}: {exc}\n')
        return 1
    sys.stdout.write(f'zipkin collector listening on {collector.url}\n')
    sys.stdout.flush()
    try:
        while not done.wait(0.5):  # a short wait keeps Ctrl-C responsive
            pass
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
    sys.stdout.write(f'stopped; {total[0]} spans received\n')
    return 0


if __name__ == '__main__':
    sys.exit(_main())
