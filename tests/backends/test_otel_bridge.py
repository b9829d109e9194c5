"""The OpenTelemetry bridge: the unchanged middleware on an OpenTelemetry SDK tracer provider.

In-process tests hand :func:`falcon_tracing_wsgi.otel.build_tracer` a provider with an
in-memory exporter. The environment-driven path (``FALCON_TRACING_TRACER=otel`` and the
``OTEL_*`` variables) runs in a subprocess, because OpenTelemetry's global tracer
provider can be set only once per process.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import textwrap

import falcon
import falcon.testing
import pytest
from opentracing import Format, UnsupportedFormatException

from falcon_tracing_wsgi import TracingConfig, TracingMiddleware
from falcon_tracing_wsgi.log_correlation import TraceContextFilter
from falcon_tracing_wsgi.outbound import finish_client_span, inject_headers, start_client_span

otel = pytest.importorskip('falcon_tracing_wsgi.otel',
                           reason="the [otel] extra is not installed (pip install -e '.[otel]')")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
CALLER = '00f067aa0ba902b7'


class User:
    def __init__(self, tracer):
        self.tracer = tracer

    def on_get(self, req, resp, user_id):
        scope = start_client_span('GET', f'http://api.example.com/users/{user_id}', 'test',
                                  tracer=self.tracer)
        outgoing = inject_headers({}, tracer=self.tracer)
        finish_client_span(scope, 200)
        resp.media = {'outgoing': outgoing,
                      'environ': {key: value for key, value in req.env.items()
                                  if key in ('HTTP_TRACEPARENT', 'HTTP_X_AMZN_TRACE_ID')}}


class Boom:
    def on_get(self, req, resp):
        raise KeyError('missing thing')


@pytest.fixture
def bridge():
    """(test client, exporter, tracer) for a Falcon app on the bridge."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = otel.build_tracer(TracingConfig(propagation=('w3c', 'b3', 'xray')),
                               tracer_provider=provider)
    app = falcon.App()
    app.add_route('/users/{user_id}', User(tracer))
    app.add_route('/boom', Boom())
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer=tracer,
                                                         config=TracingConfig()))
    yield client, exporter, tracer
    provider.shutdown()


def spans_by_name(exporter):
    return {span.name: span for span in exporter.get_finished_spans()}


def test_spans_arrive_with_route_names_and_status_tags(bridge):
    client, exporter, _ = bridge
    assert [client.simulate_get(path).status_code
            for path in ('/users/42', '/boom', '/nowhere')] == [200, 500, 404]
    spans = spans_by_name(exporter)
    assert set(spans) == {'GET /users/{user_id}', 'HTTP GET', 'GET /boom', 'GET'}
    user = spans['GET /users/{user_id}']
    assert user.attributes['http.status_code'] == 200
    assert user.attributes['span.kind'] == 'server'
    assert user.attributes['http.route'] == '/users/{user_id}'
    assert user.attributes['component'] == 'falcon'
    assert user.status.status_code is StatusCode.UNSET
    boom = spans['GET /boom']
    assert boom.attributes['http.status_code'] == 500 and boom.attributes['error'] is True
    assert boom.status.status_code is StatusCode.ERROR
    (event,) = boom.events
    assert event.name == 'error' and event.attributes['error.kind'] == 'KeyError'
    assert spans['GET'].attributes['http.status_code'] == 404
    assert spans['GET'].status.status_code is StatusCode.UNSET


def test_client_spans_are_children_with_the_client_kind(bridge):
    client, exporter, _ = bridge
    client.simulate_get('/users/1')
    spans = spans_by_name(exporter)
    server, call = spans['GET /users/{user_id}'], spans['HTTP GET']
    assert call.kind is SpanKind.CLIENT  # span.kind given at start becomes the OTel kind
    assert call.parent.span_id == server.context.span_id
    assert call.context.trace_id == server.context.trace_id
    assert call.attributes['http.url'] == 'http://api.example.com/users/1'


@pytest.mark.parametrize('headers, trace_id, parent_id, sampled', [
    pytest.param({'traceparent': f'00-{TRACE}-{CALLER}-01'}, TRACE, CALLER, True, id='w3c'),
    pytest.param({'X-B3-TraceId': TRACE, 'X-B3-SpanId': CALLER, 'X-B3-Sampled': '1'},
                 TRACE, CALLER, True, id='b3'),
    pytest.param({'X-Amzn-Trace-Id': f'Root=1-{TRACE[:8]}-{TRACE[8:]};Parent={CALLER};'
                                      'Sampled=1'}, TRACE, CALLER, True, id='xray'),
    pytest.param({'traceparent': f'00-{TRACE}-{CALLER}-00'}, TRACE, CALLER, False,
                 id='w3c-not-sampled'),
])
def test_incoming_context_is_continued_through_the_shim(bridge, headers, trace_id, parent_id,
                                                         sampled):
    client, exporter, _ = bridge
    response = client.simulate_get('/users/9', headers=headers)
    assert response.status_code == 200
    spans = spans_by_name(exporter)
    if not sampled:
        assert spans == {}
        return
    server = spans['GET /users/{user_id}']
    assert f'{server.context.trace_id:032x}' == trace_id
    assert f'{server.parent.span_id:016x}' == parent_id and server.parent.is_remote
    # The environ now names our server span; outgoing headers name the client span.
    server_id = f'{server.context.span_id:016x}'
    client_id = f'{spans["HTTP GET"].context.span_id:016x}'
    assert response.json['environ']['HTTP_TRACEPARENT'] == f'00-{trace_id}-{server_id}-01'
    assert response.json['environ']['HTTP_X_AMZN_TRACE_ID'] == \
        f'Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={server_id};Sampled=1'
    outgoing = response.json['outgoing']
    assert outgoing['traceparent'] == f'00-{trace_id}-{client_id}-01'
    assert outgoing['X-B3-TraceId'] == trace_id and outgoing['X-B3-SpanId'] == client_id


class Logged:
    """Logs one record through a TraceContextFilter on the bridge's tracer; answers its ids."""

    def __init__(self, tracer):
        self.filter = TraceContextFilter(tracer=tracer)

    def on_get(self, req, resp):
        record = logging.LogRecord('app', logging.INFO, __file__, 1, 'hello', None, None)
        self.filter.filter(record)
        resp.media = {'trace_id': record.trace_id, 'span_id': record.span_id}


@pytest.mark.parametrize('headers, shown', [
    pytest.param({}, None, id='new-trace-128bit'),
    pytest.param({'traceparent': f'00-{TRACE}-{CALLER}-01'}, TRACE, id='w3c-128bit'),
    pytest.param({'X-B3-TraceId': TRACE[16:], 'X-B3-SpanId': CALLER, 'X-B3-Sampled': '1'},
                 TRACE[16:], id='b3-64bit'),
])
def test_the_trace_id_header_and_log_ids_work_through_the_shim(headers, shown):
    """The shim's span context has no trace_id attribute: the ids come from unwrap().

    Regression: FALCON_TRACING_RESPONSE_TRACE_HEADER sent no header and log records got
    no ids under FALCON_TRACING_TRACER=otel (found by the tests against real Jaeger).
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = otel.build_tracer(TracingConfig(), tracer_provider=provider)
    app = falcon.App()
    app.add_route('/log', Logged(tracer))
    client = falcon.testing.TestClient(TracingMiddleware(
        app, tracer=tracer, config=TracingConfig(response_trace_header='X-Trace-Id')))
    try:
        response = client.simulate_get('/log', headers=headers)
    finally:
        provider.shutdown()
    (span,) = exporter.get_finished_spans()
    width = 16 if span.context.trace_id < 1 << 64 else 32
    trace_id = format(span.context.trace_id, f'0{width}x')
    assert response.headers['X-Trace-Id'] == trace_id == (shown or trace_id)
    assert len(trace_id) == (len(shown) if shown else 32)
    assert response.json == {'trace_id': trace_id,
                             'span_id': format(span.context.span_id, '016x')}


def test_inject_and_extract_round_trip_and_formats(bridge):
    _, _, tracer = bridge
    assert tracer.extract(Format.HTTP_HEADERS, {}) is None
    assert tracer.extract(Format.HTTP_HEADERS, {'traceparent': 'garbage'}) is None
    parent = tracer.extract(Format.TEXT_MAP, {'TraceParent': f'00-{TRACE}-{CALLER}-01'})
    carrier = {}
    tracer.inject(parent, Format.TEXT_MAP, carrier)
    assert carrier['traceparent'] == f'00-{TRACE}-{CALLER}-01'
    # W3C Level 2's random flag crosses the shim both ways.
    random_parent = tracer.extract(Format.TEXT_MAP, {'traceparent': f'00-{TRACE}-{CALLER}-03'})
    carrier = {}
    tracer.inject(random_parent, Format.TEXT_MAP, carrier)
    assert carrier['traceparent'] == f'00-{TRACE}-{CALLER}-03'
    with pytest.raises(UnsupportedFormatException):
        tracer.inject(parent, Format.BINARY, bytearray())
    with pytest.raises(UnsupportedFormatException):
        tracer.extract(Format.BINARY, b'')


def test_flush_and_close(bridge):
    _, _, tracer = bridge
    assert tracer.flush(1.0) is True
    assert tracer.close(1.0) is True


def _installed_exporters() -> set[str]:
    points = importlib.metadata.entry_points()
    selected = (points.select(group=otel.EXPORTER_GROUP) if hasattr(points, 'select')
                else points.get(otel.EXPORTER_GROUP, ()))
    return {point.name for point in selected}


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(('OTEL_', 'FALCON_TRACING_', 'AWS_XRAY_'))}
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env={**clean, **env})


_APP = """
    import falcon, falcon.testing, opentracing
    from falcon_tracing_wsgi import wrap

    class User:
        def on_get(self, req, resp, user_id):
            resp.media = {}

    app = falcon.App()
    app.add_route('/users/{user_id}', User())
    client = falcon.testing.TestClient(wrap(app))
    print('STATUS', client.simulate_get('/users/1').status_code, flush=True)
    tracer = opentracing.global_tracer()
    print('TRACER', type(tracer).__name__, flush=True)
    assert tracer.close(5)
"""


@pytest.mark.parametrize('env, exported', [
    pytest.param({'OTEL_TRACES_EXPORTER': 'console'}, True, id='console'),
    pytest.param({'FALCON_TRACING_OTEL_TRACES_EXPORTER': 'console',
                  'OTEL_TRACES_EXPORTER': 'nonexistent'}, True, id='ours-first'),
    pytest.param({'OTEL_TRACES_EXPORTER': 'console', 'OTEL_TRACES_SAMPLER': 'always_off'},
                 False, id='otel-sampler'),
    pytest.param({'OTEL_TRACES_EXPORTER': 'console', 'FALCON_TRACING_SAMPLE_RATE': '0'},
                 False, id='sample-rate'),
    pytest.param({'OTEL_TRACES_EXPORTER': 'console', 'FALCON_TRACING_SAMPLER': 'always_off'},
                 False, id='our-sampler'),
    pytest.param({'OTEL_TRACES_EXPORTER': 'console', 'OTEL_TRACES_SAMPLER': 'always_off',
                  'FALCON_TRACING_SAMPLE_RATE': '1'}, True, id='our-rate-wins'),
])
def test_wrap_builds_the_provider_from_the_environment(env, exported):
    result = _run(_APP, FALCON_TRACING_TRACER='otel', OTEL_SERVICE_NAME='users', **env)
    assert result.returncode == 0, result.stderr
    assert 'STATUS 200' in result.stdout and 'TRACER BridgeTracer' in result.stdout
    body = result.stdout.split('TRACER BridgeTracer', 1)[1]
    if not exported:
        assert body.strip() == ''
        return
    span = json.loads(body)
    assert span['name'] == 'GET /users/{user_id}'
    assert span['kind'] == 'SpanKind.SERVER'  # span.kind is given at start
    assert span['attributes']['span.kind'] == 'server'
    assert span['attributes']['http.status_code'] == 200
    assert span['resource']['attributes']['service.name'] == 'users'


def test_the_span_limits_reach_the_opentelemetry_provider():
    result = _run(_APP, FALCON_TRACING_TRACER='otel', OTEL_TRACES_EXPORTER='console',
                  FALCON_TRACING_SPAN_ATTRIBUTE_COUNT_LIMIT='2')
    assert result.returncode == 0, result.stderr
    span = json.loads(result.stdout.split('TRACER BridgeTracer', 1)[1])
    assert len(span['attributes']) == 2


@pytest.mark.parametrize('env, named', [
    pytest.param({'OTEL_TRACES_EXPORTER': 'otlp_missing'}, "'otlp_missing'", id='unknown'),
    pytest.param({'OTEL_TRACES_EXPORTER': 'otlp', 'OTEL_EXPORTER_OTLP_PROTOCOL': 'grpc'},
                 "'otlp_proto_grpc'", id='otlp-grpc'),
    pytest.param({'OTEL_EXPORTER_OTLP_PROTOCOL': 'http/protobuf'}, "'otlp_proto_http'",
                 id='otlp-default-with-http-protocol'),
    pytest.param({'OTEL_EXPORTER_OTLP_PROTOCOL': 'carrier-pigeon'},
                 'OTEL_EXPORTER_OTLP_PROTOCOL', id='bad-protocol'),
])
def test_a_missing_exporter_stops_startup_with_a_hint(env, named):
    if named.strip("'") in _installed_exporters():
        pytest.skip(f'the exporter {named} is installed here')
    result = _run(_APP, FALCON_TRACING_TRACER='otel', **env)
    assert result.returncode != 0
    assert 'ConfigError' in result.stderr and named in result.stderr
    if 'PROTOCOL' not in named:
        assert 'pip install opentelemetry-exporter-otlp' in result.stderr
