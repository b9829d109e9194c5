"""What a user sees in real Zipkin and Jaeger v2 after the demo's traffic.

The demo's two services run under gunicorn, configured only by environment variables,
reporting to a real Zipkin 3 or Jaeger v2 along each path a user can choose: Zipkin v2
JSON to Zipkin, Zipkin v2 JSON to Jaeger's Zipkin receiver, OTLP/HTTP (protobuf and
JSON) to Jaeger's OTLP receiver, and ``FALCON_TRACING_TRACER=otel`` with the OpenTelemetry
SDK's OTLP/HTTP exporter (where ``opentelemetry-exporter-otlp-proto-http`` is installed:
the tests extra leaves it out so the missing-exporter hint stays tested). Each trace is
read back through the backend's own query API (Zipkin ``/api/v2/trace/{id}``; Jaeger
``/api/traces/{id}``, which its UI draws, and ``/api/v3/traces/{id}``) and checked for
what a user looks for: one trace holding every span, the service names, span names from
route templates, the parent chain across the services, error marks and status codes,
durations that cover a streamed body, the error logs, and 64-bit and 128-bit trace ids
(including a caller's B3 and W3C context).
"""

from __future__ import annotations

import collections
import socket
from typing import Any, Optional

import pytest

from .traces import Outcome, Path, Seen, reporter_missing, run_scenario

ZIPKIN_JSON_TO_ZIPKIN = Path('zipkin', 'zipkin-json')
ZIPKIN_JSON_TO_JAEGER = Path('jaeger', 'zipkin-json')
OTLP_PROTOBUF_TO_JAEGER = Path('jaeger', 'otlp-protobuf')
OTLP_JSON_TO_JAEGER = Path('jaeger', 'otlp-json')
#: FALCON_TRACING_TRACER=otel: the OpenTelemetry SDK's OTLP/HTTP exporter sends the spans.
OTEL_SDK_TO_JAEGER = Path('jaeger', 'otel-sdk-otlp')

#: Every (path, query API) a user may look through.
VIEWS = [
    pytest.param(ZIPKIN_JSON_TO_ZIPKIN, 'zipkin /api/v2/trace', id='zipkin-json-to-zipkin'),
    pytest.param(ZIPKIN_JSON_TO_JAEGER, 'jaeger /api/traces', id='zipkin-json-to-jaeger-ui-api'),
    pytest.param(ZIPKIN_JSON_TO_JAEGER, 'jaeger /api/v3/traces', id='zipkin-json-to-jaeger-v3'),
    pytest.param(OTLP_PROTOBUF_TO_JAEGER, 'jaeger /api/traces', id='otlp-proto-to-jaeger-ui-api'),
    pytest.param(OTLP_PROTOBUF_TO_JAEGER, 'jaeger /api/v3/traces', id='otlp-proto-to-jaeger-v3'),
    pytest.param(OTLP_JSON_TO_JAEGER, 'jaeger /api/traces', id='otlp-json-to-jaeger-ui-api'),
    pytest.param(OTLP_JSON_TO_JAEGER, 'jaeger /api/v3/traces', id='otlp-json-to-jaeger-v3'),
    pytest.param(OTEL_SDK_TO_JAEGER, 'jaeger /api/traces', id='otel-sdk-to-jaeger-ui-api'),
    pytest.param(OTEL_SDK_TO_JAEGER, 'jaeger /api/v3/traces', id='otel-sdk-to-jaeger-v3'),
]

ROOT = 'root'  # no parent: the trace starts here
CALLER = 'caller'  # the parent is the caller's span, from the request's headers
CHECKOUT = ('frontend', 'SERVER', 'GET /checkout/{item_id}')
CALL = ('frontend', 'CLIENT', 'HTTP GET')
ITEMS = ('backend', 'SERVER', 'GET /items/{item_id}')
LOOKUP = ('backend', None, 'inventory.lookup')
BROKEN = ('frontend', 'SERVER', 'GET /broken')
FAIL = ('backend', 'SERVER', 'GET /fail')
STREAM = ('frontend', 'SERVER', 'GET /stream')


def _checkout(root_parent: str) -> list[tuple[Any, ...]]:
    return [(*CHECKOUT, root_parent, '200', False), (*CALL, CHECKOUT, '200', False),
            (*ITEMS, CALL, '200', False), (*LOOKUP, ITEMS, None, False)]


#: Each request's trace: (service, kind, span name, parent's (service, kind, name) or
#: ROOT/CALLER, http.status_code, error mark), once per span.
EXPECTED = {
    'checkout': _checkout(ROOT),
    'failing': [(*BROKEN, ROOT, '502', True), (*CALL, BROKEN, '500', True),
                (*FAIL, CALL, '500', True)],
    'streamed': [(*STREAM, ROOT, '200', False)]
    + 3 * [(*CALL, STREAM, '200', False), (*ITEMS, CALL, '200', False),
           (*LOOKUP, ITEMS, None, False)],
    'b3-64bit': _checkout(CALLER),
    'w3c-128bit': _checkout(CALLER),
}
REQUESTS = list(EXPECTED)


@pytest.fixture(scope='session')
def scenarios(request):
    """Each path's scenario, run once per session when a test first needs it.

    A scenario that failed (a service did not start) fails every test of its path with
    the same error, without being tried again.
    """
    done: dict[Path, Any] = {}

    def get(path: Path) -> dict[str, Outcome]:
        if path not in done:
            missing = reporter_missing(path)
            if missing:
                pytest.skip(missing)
            server = request.getfixturevalue(f'{path.backend}_server')
            try:
                done[path] = run_scenario(path, server)
            except Exception as exc:
                done[path] = exc
        if isinstance(done[path], Exception):
            raise done[path]
        return done[path]
    return get


def _view(scenarios, path: Path, api: str, name: str) -> tuple[Outcome, list[Seen]]:
    outcome = scenarios(path)[name]
    return outcome, outcome.views[api]


def _explain(path: Path, outcome: Outcome, seen: list[Seen]) -> str:
    spans = '\n'.join(f'  {s}' for s in sorted(seen, key=lambda s: s.start))
    logs = '\n'.join(f'--- {n} ---\n{text[-3000:]}' for n, text in outcome.logs.items())
    return (f'{path.wire} to {path.backend}, {outcome.request.name}: HTTP {outcome.status}, '
            f'trace {outcome.trace_id}, '
            f'{len(seen)} spans shown:\n{spans}\n{logs}')


def _name(api: str, name: str) -> str:
    # Zipkin stores and shows span names in lower case (zipkin2.Span normalises them).
    return name.lower() if api.startswith('zipkin') else name


def _label(span: Seen) -> tuple[Any, ...]:
    return (span.service, span.kind, span.name)


def _expected_label(label: Any, api: str) -> Any:
    if isinstance(label, tuple):
        service, kind, name = label
        return (service, kind, _name(api, name))
    return label


@pytest.mark.parametrize('name', REQUESTS)
@pytest.mark.parametrize('path, api', VIEWS)
def test_one_trace_shows_every_span_with_services_names_parents_and_status(
        scenarios, path, api, name):
    """The waterfall a user opens: each span once, under the right parent, marked right."""
    outcome, seen = _view(scenarios, path, api, name)
    by_id = {span.span_id: span for span in seen}
    caller = outcome.request.headers
    caller_span = caller.get('X-B3-SpanId') or caller.get('traceparent', '--').split('-')[2]

    def parent_label(span: Seen) -> Any:
        if span.parent_id is None:
            return ROOT
        if span.parent_id == caller_span:
            return CALLER
        parent = by_id.get(span.parent_id)
        return _label(parent) if parent else f'missing parent {span.parent_id}'

    shown = collections.Counter(
        (*_label(span), parent_label(span), span.status_code, span.error) for span in seen)
    expected = collections.Counter(
        (service, kind, _name(api, span_name), _expected_label(parent, api), status, error)
        for service, kind, span_name, parent, status, error in EXPECTED[name])
    assert shown == expected, _explain(path, outcome, seen)
    assert len(by_id) == len(seen), 'span ids must be unique'


def _caller_trace_id(outcome: Outcome) -> Optional[str]:
    headers = outcome.request.headers
    if 'X-B3-TraceId' in headers:
        return headers['X-B3-TraceId']
    if 'traceparent' in headers:
        return headers['traceparent'].split('-')[1]
    return None


@pytest.mark.parametrize('name, bits', [
    pytest.param('checkout', 128, id='new-trace-128bit'),
    pytest.param('b3-64bit', 64, id='b3-caller-64bit'),
    pytest.param('w3c-128bit', 128, id='w3c-caller-128bit'),
])
@pytest.mark.parametrize('path, api', VIEWS)
def test_the_trace_is_found_by_the_id_the_service_answered(scenarios, path, api, name, bits):
    """The id in the response header finds the trace; a caller's id is kept, 64 or 128 bits."""
    outcome, seen = _view(scenarios, path, api, name)
    assert len(outcome.trace_id) == bits // 4
    caller = _caller_trace_id(outcome)
    if caller is not None:
        assert outcome.trace_id == caller
    # Jaeger's v3 API (OTLP JSON) always writes 16 bytes; its UI API keeps 64-bit ids short.
    shown = outcome.trace_id.rjust(32, '0') if api.endswith('/v3/traces') else outcome.trace_id
    assert {span.trace_id for span in seen} == {shown}, _explain(path, outcome, seen)


#: Start and duration are each rounded to a whole microsecond by the exporter or the backend.
ROUNDING_SLACK_US = 2


@pytest.mark.parametrize('path, api', VIEWS)
def test_the_streamed_response_lasts_until_its_body_is_sent(scenarios, path, api):
    """The server span covers the backend calls made while the body was streamed."""
    outcome, seen = _view(scenarios, path, api, 'streamed')
    assert outcome.status == 200 and outcome.body.count(b'\n') == 3
    (server,) = [span for span in seen if (span.service, span.kind) == ('frontend', 'SERVER')]
    others = [span for span in seen if span is not server]
    assert len(others) == 9, _explain(path, outcome, seen)
    # Backends show whole microseconds, each start and duration rounded on its own: a child
    # that ends within a microsecond or two of its parent may show up to that much later.
    slack = ROUNDING_SLACK_US
    # The frontend's own spans (its calls) end inside its server span. The backend's
    # start inside it (each call is made while the body streams) but may end after it:
    # a server finishes its span when it closes its response, which can come after the
    # frontend has read the whole body (seen once in CI on a loaded machine).
    assert all(server.start <= span.start and span.end <= server.end + slack
               for span in others if span.service == 'frontend'), \
        _explain(path, outcome, seen)
    assert all(server.start <= span.start <= server.end
               for span in others if span.service == 'backend'), \
        _explain(path, outcome, seen)
    calls = sorted((span for span in others if span.kind == 'CLIENT'), key=lambda s: s.start)
    # The same rounding applies between siblings: one call's shown end may pass the next
    # call's shown start by a microsecond or two.
    assert all(a.end <= b.start + slack for a, b in zip(calls, calls[1:])), \
        'one chunk after another: ' + _explain(path, outcome, seen)


@pytest.mark.parametrize('service, kind, words', [
    pytest.param('backend', 'SERVER',
                 ('RuntimeError', 'the inventory database is unavailable'), id='backend-500'),
    pytest.param('frontend', 'SERVER', ('HTTPBadGateway',), id='frontend-502'),
])
@pytest.mark.parametrize('path, api', VIEWS)
def test_a_failed_request_shows_its_error_log(scenarios, path, api, service, kind, words):
    """The exception's type and message are in the span's logs (annotations in Zipkin)."""
    outcome, seen = _view(scenarios, path, api, 'failing')
    (span,) = [s for s in seen if (s.service, s.kind) == (service, kind)]
    assert span.error
    assert any(all(word in event for word in words) for event in span.events), \
        _explain(path, outcome, seen)


@pytest.mark.parametrize('name', REQUESTS)
@pytest.mark.parametrize('otlp', [
    pytest.param(OTLP_PROTOBUF_TO_JAEGER, id='otlp-protobuf'),
    pytest.param(OTLP_JSON_TO_JAEGER, id='otlp-json'),
    pytest.param(OTEL_SDK_TO_JAEGER, id='otel-sdk-otlp'),
])
def test_jaeger_shows_the_same_trace_whether_sent_as_zipkin_or_otlp(scenarios, otlp, name):
    """The same request, reported as Zipkin JSON or OTLP, draws the same waterfall in Jaeger."""
    api = 'jaeger /api/traces'

    def shape(path: Path) -> collections.Counter[tuple[Any, ...]]:
        outcome, seen = _view(scenarios, path, api, name)
        by_id = {span.span_id: span for span in seen}
        return collections.Counter(
            (span.service, span.kind, span.name, span.error, span.status_code,
             _label(by_id[span.parent_id]) if span.parent_id in by_id else None,
             len(span.events)) for span in seen)

    otlp_shape = shape(otlp)  # skips first when there is no OTLP reporter
    assert otlp_shape == shape(ZIPKIN_JSON_TO_JAEGER)


def test_a_server_whose_port_was_taken_starts_again_on_new_ports(jaeger_binary_path):
    from .servers import JaegerServer
    server = JaegerServer(jaeger_binary_path)
    taken = server.ports['extensions.jaeger_query.http.endpoint']
    with socket.socket() as squatter:
        squatter.bind(('127.0.0.1', taken))
        squatter.listen()
        server.start(timeout=60.0)
        try:
            assert server.ports['extensions.jaeger_query.http.endpoint'] != taken
            assert server.trace('0' * 31 + '1') is None  # its query API answers: unknown
        finally:
            server.close()
