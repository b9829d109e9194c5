"""Two traced services, one trace: a frontend calls a backend through each client.

Both apps are wrapped by :class:`TracingMiddleware`, served by real WSGI servers on
127.0.0.1, with the tracer ``install()`` builds from the environment, exporting Zipkin v2
over HTTP to the package's :class:`ZipkinCollector` (which rejects invalid spans). The
frontend calls the backend with ``tracer=None`` - the global tracer, as in a service.

Each test calls once through ``requests`` and once through the client under test, and
compares the two CLIENT spans: same tags and values but for ``component``. The export
itself (``http.client`` inside the reporter) must add no span of its own.
"""

from __future__ import annotations

import http.client
import socketserver
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import opentracing
import pytest

from falcon_tracing_wsgi import TracingMiddleware, install
from falcon_tracing_wsgi.zipkin import ZipkinCollector

from ._clients import BY_NAME
from ._server import TIMEOUT


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _backend(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b'done'
    start_response('200 OK', [('Content-Type', 'text/plain'),
                              ('Content-Length', str(len(body)))])
    return [body]


def _frontend(backend_url: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        client = environ['PATH_INFO'].rsplit('/', 1)[1]
        status = BY_NAME[client](None, 'GET', backend_url + '/work?token=s3cret', {})
        body = str(status).encode()
        start_response('200 OK', [('Content-Type', 'text/plain'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    return app


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    server = wsgiref.simple_server.make_server('127.0.0.1', 0, app,
                                               server_class=_ThreadingWSGIServer,
                                               handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@pytest.fixture(scope='module')
def collector() -> Iterator[ZipkinCollector]:
    with ZipkinCollector() as running:
        yield running


@pytest.fixture()
def frontend_url(collector: ZipkinCollector, monkeypatch: Any) -> Iterator[str]:
    monkeypatch.setenv('FALCON_TRACING_SERVICE_NAME', 'shop')
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_URL', collector.url)
    monkeypatch.setenv('FALCON_TRACING_PROPAGATION', 'b3,w3c')
    collector.clear()
    tracer = install()  # the conftest fixture restores the previous global tracer
    try:
        with _serve(TracingMiddleware(_backend)) as backend_url, \
                _serve(TracingMiddleware(_frontend(backend_url))) as url:
            yield url
    finally:
        tracer.close(TIMEOUT)  # type: ignore[attr-defined]


def _call(frontend_url: str, client: str) -> str:
    host, port = frontend_url[len('http://'):].rsplit(':', 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        connection.request('GET', '/call/' + client)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _traces(collector: ZipkinCollector, count: int) -> dict[str, list[dict[str, Any]]]:
    # Server spans finish when the WSGI server closes the response, which may be after
    # the caller has its bytes: flush until all are exported (bounded).
    assert opentracing.global_tracer().flush(TIMEOUT)  # type: ignore[attr-defined]
    assert collector.wait_for_spans(count, TIMEOUT), collector.spans()
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in collector.spans():
        traces.setdefault(span['traceId'], []).append(span)
    return traces


def _chain(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The trace's spans as (frontend SERVER, CLIENT, backend SERVER), checking the links."""
    (client,) = [s for s in spans if s['kind'] == 'CLIENT']
    (front,) = [s for s in spans if s['kind'] == 'SERVER' and 'parentId' not in s]
    (back,) = [s for s in spans if s['kind'] == 'SERVER' and s.get('parentId') == client['id']]
    assert client['parentId'] == front['id']
    assert len(spans) == 3, spans
    return front, client, back


@pytest.mark.parametrize('client', ['httpx', 'httpx-async', 'urllib3'])
def test_a_call_through_each_client_continues_the_trace(collector, frontend_url, client):
    assert _call(frontend_url, 'requests') == '200'
    assert _call(frontend_url, client) == '200'

    traces = _traces(collector, 6)
    assert len(traces) == 2  # one trace per incoming call, each across both services
    by_client = {}
    for spans in traces.values():
        front, span, back = _chain(spans)
        assert back['tags']['http.url'].endswith('/work?token=REDACTED')
        by_client[front['tags']['http.url'].rsplit('/', 1)[1]] = span
    reference, span = by_client['requests'], by_client[client]
    assert span['name'] == reference['name'] == 'HTTP GET'
    assert span['tags'].pop('component') == client.split('-')[0]
    reference['tags'].pop('component')
    assert span['tags'] == reference['tags']
    assert {'http.method', 'http.url', 'http.status_code'} <= set(span['tags'])
    assert span['remoteEndpoint'] == reference['remoteEndpoint'] and span['remoteEndpoint']
    assert span['tags']['http.url'].endswith('/work?token=REDACTED')


def test_the_export_itself_is_never_traced(collector, frontend_url):
    for client in BY_NAME:
        assert _call(frontend_url, client) == '200'

    traces = _traces(collector, 3 * len(BY_NAME))
    # That flush sent a batch over HTTP with every client integration loaded and in use:
    # had any of them traced the export, its span would go out with the next flush.
    assert opentracing.global_tracer().flush(TIMEOUT)  # type: ignore[attr-defined]
    spans = collector.spans()
    collector_address = collector.url.split('/')[2]
    assert collector.request_count >= 1
    assert len(spans) == 3 * len(BY_NAME)
    assert [s['kind'] for s in spans].count('CLIENT') == len(BY_NAME)
    assert not [s for s in spans if collector_address in s['tags'].get('http.url', '')]
    assert all(len(trace) == 3 for trace in traces.values())
