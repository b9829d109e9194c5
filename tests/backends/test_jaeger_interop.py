"""Jaeger interop with the real ``jaeger-client`` library as the peer.

Three directions: a jaeger-client service calls ours over real HTTP (a wsgiref server on
127.0.0.1) and we continue its trace and see its baggage; our outgoing headers are
extracted by jaeger-client as the parent; and the middleware runs unchanged with a
jaeger-client tracer. jaeger-client reports into its in-memory reporter: no agent.

jaeger-client is archived upstream and not part of the ``tests`` extra; install it with
``pip install -e '.[jaeger]'``.
"""

from __future__ import annotations

import http.client
import json
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon
import falcon.testing
import pytest
from opentracing import Format

from falcon_tracing_wsgi import TracingConfig, TracingMiddleware
from falcon_tracing_wsgi.outbound import inject_headers
from falcon_tracing_wsgi.testing import make_tracer

jaeger_client = pytest.importorskip(
    'jaeger_client', reason="jaeger-client is not installed (pip install -e '.[jaeger]')")
from jaeger_client.reporter import InMemoryReporter  # noqa: E402

BAGGAGE = {'user': 'alice smith', 'tenant': 'acme/eu'}


def jaeger_tracer(bits128: bool = True) -> tuple[Any, InMemoryReporter]:
    reporter = InMemoryReporter()
    tracer = jaeger_client.Tracer('frontend', reporter, jaeger_client.ConstSampler(True),
                                  generate_128bit_trace_id=bits128)
    return tracer, reporter


def jaeger_tags(span: Any) -> dict[str, Any]:
    """jaeger-client keeps tags as thrift Tag records; read back their values."""
    values = {}
    for tag in span.tags:
        for field in ('vStr', 'vLong', 'vBool', 'vDouble'):
            value = getattr(tag, field)
            if value is not None:
                values[tag.key] = value
                break
    return values


class Whoami:
    """Answers with what the server span sees: its ids, its baggage, outgoing headers."""

    def __init__(self, tracer):
        self.tracer = tracer

    def on_get(self, req, resp, user_id):
        span = req.context.span
        resp.media = {
            'trace_id': span.context.trace_id, 'span_id': span.context.span_id,
            'parent_id': span.context.parent_id,
            'baggage': {key: span.get_baggage_item(key) for key in BAGGAGE},
            'outgoing': inject_headers({}, tracer=self.tracer),
        }


class Fail:
    def on_get(self, req, resp):
        raise falcon.HTTPServiceUnavailable()


def falcon_app(tracer: Any) -> falcon.App:
    app = falcon.App()
    app.add_route('/users/{user_id}', Whoami(tracer))
    app.add_route('/fail', Fail())
    return app


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; stopped on exit."""
    server = wsgiref.simple_server.make_server('127.0.0.1', 0, app,
                                               handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
    try:
        connection.request('GET', path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b'null')
    finally:
        connection.close()


@pytest.mark.parametrize('bits128', [pytest.param(True, id='128-bit'),
                                     pytest.param(False, id='64-bit')])
def test_a_jaeger_client_service_calls_ours_over_http(bits128):
    caller, caller_spans = jaeger_tracer(bits128)
    ours, our_spans = make_tracer(('b3', 'w3c', 'jaeger'))
    app = TracingMiddleware(falcon_app(ours), tracer=ours, config=TracingConfig())
    with serving(app) as port, caller.start_active_span('checkout') as scope:
        for key, value in BAGGAGE.items():
            scope.span.set_baggage_item(key, value)
        headers: dict[str, str] = {}
        caller.inject(scope.span.context, Format.HTTP_HEADERS, headers)
        status, body = get(port, '/users/42', headers)
    assert 'uber-trace-id' in headers and 'uberctx-user' in headers
    jaeger_context = caller_spans.get_spans()[0].context
    (server,) = our_spans.spans
    width = 32 if bits128 else 16
    assert status == 200
    assert server.operation_name == 'GET /users/{user_id}'
    assert int(server.context.trace_id, 16) == jaeger_context.trace_id
    assert len(server.context.trace_id) == width  # the caller's width is kept
    assert int(server.context.parent_id, 16) == jaeger_context.span_id
    assert body['trace_id'] == server.context.trace_id
    assert body['baggage'] == BAGGAGE
    # What the app forwards continues the same trace, as a child of our server span.
    outgoing = body['outgoing']['uber-trace-id'].split(':')
    assert [int(part, 16) for part in outgoing[:3]] == [
        jaeger_context.trace_id, int(server.context.span_id, 16), jaeger_context.span_id]
    assert body['outgoing']['uberctx-user'] == 'alice%20smith'


def test_jaeger_client_extracts_our_outgoing_headers_as_the_parent():
    ours, _ = make_tracer(('w3c', 'jaeger'))
    peer, peer_spans = jaeger_tracer()
    with ours.start_active_span('GET /cart') as scope:
        scope.span.set_baggage_item('user', 'alice smith')
        headers = inject_headers({}, tracer=ours)
    parent = peer.extract(Format.HTTP_HEADERS, headers)
    assert parent.trace_id == int(scope.span.context.trace_id, 16)
    assert parent.span_id == int(scope.span.context.span_id, 16)
    assert parent.baggage == {'user': 'alice smith'}
    with peer.start_active_span('GET /stock', child_of=parent):
        pass
    (child,) = peer_spans.get_spans()
    assert child.context.trace_id == parent.trace_id
    assert child.context.parent_id == int(scope.span.context.span_id, 16)


@pytest.mark.parametrize('path, name, status, error', [
    pytest.param('/users/7', 'GET /users/{user_id}', 200, False, id='route'),
    pytest.param('/fail', 'GET /fail', 503, True, id='5xx'),
    pytest.param('/nowhere', 'GET', 404, False, id='no-route'),
])
def test_the_middleware_runs_on_a_jaeger_client_tracer(path, name, status, error):
    tracer, reporter = jaeger_tracer()
    app = TracingMiddleware(falcon_app(tracer), tracer=tracer, config=TracingConfig())
    result = falcon.testing.TestClient(app).simulate_get(path)
    assert result.status_code == status
    (span,) = reporter.get_spans()
    tags = jaeger_tags(span)
    assert span.operation_name == name
    assert tags['span.kind'] == 'server' and tags['component'] == 'falcon'
    assert tags['http.status_code'] == status and tags['http.method'] == 'GET'
    assert tags.get('error', False) is error
    assert span.end_time is not None and span.end_time >= span.start_time
