"""The demo's traffic through a real backend, and each backend's view of a trace.

A *path* is how spans travel: which server receives them and in which wire format.
:func:`run_scenario` starts the demo's two services (gunicorn, configured only by
environment variables) reporting along one path, sends the requests a user would, waits
(bounded) until the backend shows every span of every trace, and returns what the
backend's query API answered, reduced to what its UI draws (:class:`Seen`): service,
span name, kind, parent, timing, the error mark, the HTTP status and the log lines.
"""

from __future__ import annotations

import http.client
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from falcon_tracing_wsgi import TracingConfig
from falcon_tracing_wsgi.config import ConfigError
from falcon_tracing_wsgi.demo import services

from .servers import JaegerServer, ZipkinServer

TRACE_HEADER = 'X-Trace-Id'
_READY_TIMEOUT = 30.0
_REQUEST_TIMEOUT = 15.0
#: How long a backend may take to show a complete trace after the request returned.
_SHOW_TIMEOUT = 30.0


class Path(NamedTuple):
    """How spans reach a backend: the server and the reporter's wire format."""

    backend: str  # 'zipkin' | 'jaeger'
    wire: str  # 'zipkin-json' | 'otlp-protobuf' | 'otlp-json'


@dataclass(frozen=True)
class Seen:
    """One span as a backend's UI shows it."""

    trace_id: str
    span_id: str
    parent_id: Optional[str]
    service: str
    name: str
    kind: Optional[str]  # 'SERVER' | 'CLIENT' | None
    start: int  # microseconds since the epoch
    duration: int  # microseconds
    error: bool
    status_code: Optional[str]
    events: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.start + self.duration


class Request(NamedTuple):
    """One request to the frontend and the spans its trace must show."""

    name: str
    path: str
    headers: dict[str, str]
    spans: int


def zipkin_view(spans: list[dict[str, Any]]) -> list[Seen]:
    """Zipkin's ``GET /api/v2/trace/{id}``: Zipkin v2 spans, as the Zipkin UI reads them."""
    seen = []
    for span in spans:
        tags = span.get('tags', {})
        seen.append(Seen(
            trace_id=span['traceId'], span_id=span['id'], parent_id=span.get('parentId'),
            service=span['localEndpoint']['serviceName'], name=span['name'],
            kind=span.get('kind'), start=span['timestamp'], duration=span.get('duration', 0),
            # The UI marks a span failed when it has an "error" tag (any value).
            error='error' in tags, status_code=_status(tags),
            events=tuple(a['value'] for a in span.get('annotations', []))))
    return seen


#: Where a span's HTTP status is: OpenTracing's name (Zipkin's default) or OpenTelemetry's
#: stable one (the otlp reporter's default).
STATUS_KEYS = ('http.status_code', 'http.response.status_code')


def _status(tags: dict[str, Any]) -> Optional[str]:
    return next((str(tags[key]) for key in STATUS_KEYS if key in tags), None)


def _jaeger_value(tag: dict[str, Any]) -> str:
    value = tag['value']
    return str(value).lower() if isinstance(value, bool) else str(value)


def jaeger_view(answer: dict[str, Any]) -> list[Seen]:
    """Jaeger's ``GET /api/traces/{id}`` (what its UI fetches): one trace under ``data``."""
    (trace,) = answer['data']
    processes = trace['processes']
    seen = []
    for span in trace['spans']:
        tags = span.get('tags', [])
        parents = [r['spanID'] for r in span.get('references', []) if r['refType'] == 'CHILD_OF']
        kind = next((_jaeger_value(t) for t in tags if t['key'] == 'span.kind'), None)
        events = []
        for log in span.get('logs', []):
            fields = {f['key']: _jaeger_value(f) for f in log['fields']}
            # One "event" field reads as its value; more fields as k=v (as in Zipkin).
            events.append(fields['event'] if list(fields) == ['event']
                          else ' '.join(f'{k}={v}' for k, v in fields.items()))
        seen.append(Seen(
            trace_id=span['traceID'], span_id=span['spanID'],
            parent_id=parents[0] if parents else None,
            service=processes[span['processID']]['serviceName'], name=span['operationName'],
            kind=kind.upper() if kind in ('server', 'client') else None,
            start=span['startTime'], duration=span['duration'],
            # The UI's rule: a tag "error" whose value is true (boolean or text).
            error=any(t['key'] == 'error' and _jaeger_value(t) == 'true' for t in tags),
            status_code=_status({t['key']: _jaeger_value(t) for t in tags}),
            events=tuple(events)))
    return seen


_OTLP_KINDS = {2: 'SERVER', 3: 'CLIENT'}


def _otlp_value(value: dict[str, Any]) -> str:
    (kind, content), = value.items()
    return str(content).lower() if kind == 'boolValue' else str(content)


def _otlp_event(event: dict[str, Any]) -> str:
    attributes = [f"{a['key']}={_otlp_value(a['value'])}" for a in event.get('attributes', [])]
    return ' '.join([f"event={event['name']}", *attributes]) if attributes else event['name']


def jaeger_v3_view(answer: dict[str, Any]) -> list[Seen]:
    """Jaeger's ``GET /api/v3/traces/{id}``: OTLP JSON under ``result``."""
    seen = []
    for resource_spans in answer['result']['resourceSpans']:
        resource = {a['key']: _otlp_value(a['value'])
                    for a in resource_spans['resource'].get('attributes', [])}
        for scope_spans in resource_spans['scopeSpans']:
            for span in scope_spans['spans']:
                attributes = {a['key']: _otlp_value(a['value'])
                              for a in span.get('attributes', [])}
                start = int(span['startTimeUnixNano'])
                seen.append(Seen(
                    trace_id=span['traceId'], span_id=span['spanId'],
                    parent_id=span.get('parentSpanId') or None,
                    service=resource['service.name'], name=span['name'],
                    kind=_OTLP_KINDS.get(span.get('kind', 0)),
                    start=start // 1000,
                    duration=(int(span['endTimeUnixNano']) - start) // 1000,
                    error=span.get('status', {}).get('code') == 2,  # STATUS_CODE_ERROR
                    status_code=_status(attributes),
                    events=tuple(_otlp_event(e) for e in span.get('events', []))))
    return seen


def reporter_env(path: Path, server: Any) -> dict[str, str]:
    """The variables that send the demo's spans along ``path`` to ``server``."""
    common = {'FALCON_TRACING_FLUSH_INTERVAL': '0.1',
              'FALCON_TRACING_RESPONSE_TRACE_HEADER': TRACE_HEADER}
    if path.wire == 'zipkin-json':
        url = server.spans_url if isinstance(server, ZipkinServer) else server.zipkin_url
        return {**common, 'FALCON_TRACING_ZIPKIN_URL': url}
    if path.wire == 'otel-sdk-otlp':  # FALCON_TRACING_TRACER=otel, the SDK's exporter
        return {**common, 'FALCON_TRACING_TRACER': 'otel',
                'OTEL_TRACES_EXPORTER': 'otlp_proto_http', 'OTEL_BSP_SCHEDULE_DELAY': '100',
                'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': server.otlp_http_url}
    protocol = {'otlp-protobuf': 'http/protobuf', 'otlp-json': 'http/json'}[path.wire]
    return {**common, 'FALCON_TRACING_REPORTER': 'otlp',
            'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': server.otlp_http_url,
            'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL': protocol}


def reporter_missing(path: Path) -> Optional[str]:
    """Why this package cannot report along ``path`` (None: it can)."""
    if path.wire == 'zipkin-json':
        return None
    if path.wire == 'otel-sdk-otlp':
        try:
            import opentelemetry.exporter.otlp.proto.http  # noqa: F401
        except ImportError:
            return 'opentelemetry-exporter-otlp-proto-http is not installed'
        return None
    try:
        TracingConfig.from_env(reporter_env(path, _Placeholder()))
    except ConfigError as exc:
        return f'otlp reporter not available ({exc})'
    return None


class _Placeholder:
    otlp_http_url = 'http://127.0.0.1:4318/v1/traces'


def _new_id(hex_digits: int) -> str:
    return os.urandom(hex_digits // 2).hex()


def requests_to_send() -> list[Request]:
    """The demo's requests, and two that continue a caller's trace (fresh ids each run)."""
    b3_trace, b3_span = _new_id(16), _new_id(16)
    w3c_trace, w3c_span = _new_id(32), _new_id(16)
    return [
        Request('checkout', '/checkout/42', {}, 4),
        Request('failing', '/broken', {}, 3),
        Request('streamed', '/stream', {}, 10),
        Request('b3-64bit', '/checkout/1', {'X-B3-TraceId': b3_trace, 'X-B3-SpanId': b3_span,
                                             'X-B3-Sampled': '1'}, 4),
        Request('w3c-128bit', '/checkout/2',
                {'traceparent': f'00-{w3c_trace}-{w3c_span}-01'}, 4),
    ]


class Outcome(NamedTuple):
    """One request's answer and what each of the backend's APIs shows of its trace."""

    request: Request
    status: int
    body: bytes
    trace_id: str
    views: dict[str, list[Seen]]  # API name -> spans
    logs: dict[str, str]  # service name -> its gunicorn log (for failure messages)


def _get(port: int, request: Request) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=_REQUEST_TIMEOUT)
    try:
        connection.request('GET', request.path, headers=request.headers)
        response = connection.getresponse()
        body = response.read()
        return response.status, response.getheader(TRACE_HEADER) or '', body
    finally:
        connection.close()


def apis(server: Any) -> dict[str, Callable[[str], Optional[list[Seen]]]]:
    """Each query API of ``server``: trace id -> its spans (None while it has none)."""
    if isinstance(server, ZipkinServer):
        return {'zipkin /api/v2/trace': lambda t: _nonempty(server.trace(t), zipkin_view)}
    assert isinstance(server, JaegerServer)
    return {'jaeger /api/traces': lambda t: _nonempty(server.trace(t), jaeger_view),
            'jaeger /api/v3/traces': lambda t: _nonempty(server.trace_v3(t), jaeger_v3_view)}


def _nonempty(answer: Any, view: Callable[[Any], list[Seen]]) -> Optional[list[Seen]]:
    if not answer:
        return None
    if isinstance(answer, dict) and not (answer.get('data') or answer.get('result')):
        return None
    return view(answer)


def wait_for_trace(read: Callable[[str], Optional[list[Seen]]], trace_id: str, spans: int,
                   deadline: float) -> list[Seen]:
    """Poll ``read`` until the trace shows ``spans`` spans (or the deadline: what it shows)."""
    while True:
        seen = read(trace_id) or []
        if len(seen) >= spans or time.monotonic() >= deadline:
            return seen
        # NOTE: polling the backend's own API is the only signal that it has stored
        # the spans; the pause is bounded by the deadline above.
        time.sleep(0.2)


def run_scenario(path: Path, server: Any) -> dict[str, Outcome]:
    """Run the demo's services reporting along ``path`` to ``server``; what the APIs show.

    Raises:
        falcon_tracing_wsgi.demo.processes.ServerError: a service did not start.
    """
    backend, frontend = services(reporter_env(path, server))
    answers = []
    try:
        for service in (backend, frontend):
            service.start()
        for service in (backend, frontend):
            service.wait_ready(_READY_TIMEOUT)
            service.wait_workers(1, _READY_TIMEOUT)
        for request in requests_to_send():
            answers.append((request, *_get(frontend.port, request)))
    finally:
        logs = {s.name: s.log() for s in (backend, frontend)}
        for service in (backend, frontend):
            service.close()  # a graceful stop also flushes what is still queued
    readers = apis(server)
    deadline = time.monotonic() + _SHOW_TIMEOUT
    outcomes = {}
    for request, status, trace_id, body in answers:
        # No trace id in the answer: nothing to look up (the tests say what is missing).
        views = {api: wait_for_trace(read, trace_id, request.spans, deadline)
                 if trace_id else [] for api, read in readers.items()}
        outcomes[request.name] = Outcome(request, status, body, trace_id, views, logs)
    return outcomes
