"""The requests integration against a real HTTP server on 127.0.0.1, traced by MockTracer."""

from __future__ import annotations

from typing import Any

import opentracing
import pytest
import requests
from opentracing import Format
from opentracing.mocktracer import MockTracer
from opentracing.scope_managers.contextvars import ContextVarsScopeManager
from requests.adapters import BaseAdapter, HTTPAdapter

from falcon_tracing_wsgi import _semconv
from falcon_tracing_wsgi.integrations.requests import (
    TracedSession, TracingAdapter, instrument_session)

from ._server import TIMEOUT as _TIMEOUT


def _only_span(tracer: MockTracer) -> Any:
    spans = tracer.finished_spans()
    assert len(spans) == 1, spans
    return spans[0]


@pytest.mark.parametrize(('method', 'path', 'status', 'error'), [
    pytest.param('GET', '/ok', 200, False, id='get-200'),
    pytest.param('POST', '/ok', 200, False, id='post-200'),
    pytest.param('DELETE', '/status/404', 404, False, id='4xx-is-not-an-error'),
    pytest.param('GET', '/status/503', 503, True, id='5xx-is-an-error'),
])
def test_client_span_tags_and_status(server, base_url, tracer, method, path, status, error):
    with TracedSession(tracer=tracer) as session:
        response = session.request(method, base_url + path, data=b'x' if method == 'POST'
                                   else None, timeout=_TIMEOUT)

    assert response.status_code == status
    span = _only_span(tracer)
    port = server.server_address[1]
    expected = {
        'span.kind': 'client', 'component': 'requests', 'http.method': method,
        'http.url': base_url + path, 'peer.hostname': '127.0.0.1', 'peer.ipv4': '127.0.0.1',
        'peer.port': port, 'http.status_code': status,
    }
    if error:
        expected['error'] = True
    assert span.tags == expected
    assert span.operation_name == 'HTTP ' + method
    assert span.finished


@pytest.mark.parametrize(('path', 'status', 'error_type'), [
    pytest.param('/ok?token=abc', 200, None, id='ok'),
    pytest.param('/status/404', 404, '404', id='4xx-is-a-client-error'),
    pytest.param('/status/503', 503, '503', id='5xx'),
])
def test_client_span_stable_http_names(server, base_url, tracer, path, status, error_type):
    """OTEL_SEMCONV_STABILITY_OPT_IN=http: OpenTelemetry's stable names only."""
    _semconv.set_default('stable')  # what install() does; conftest restores it
    with TracedSession(tracer=tracer) as session:
        session.get(base_url + path, timeout=_TIMEOUT)
    span = _only_span(tracer)
    expected = {
        'span.kind': 'client', 'component': 'requests', 'http.request.method': 'GET',
        'url.full': base_url + path.replace('abc', 'REDACTED'),
        'server.address': '127.0.0.1', 'server.port': server.server_address[1],
        'http.response.status_code': status,
    }
    if error_type is not None:
        expected.update({'error': True, 'error.type': error_type})
    assert span.tags == expected


def test_server_receives_context_of_the_client_span(server, base_url, tracer):
    with tracer.start_active_span('parent') as parent, TracedSession(tracer=tracer) as session:
        session.get(base_url + '/orders/123', timeout=_TIMEOUT)

    client = next(s for s in tracer.finished_spans() if s.operation_name == 'HTTP GET')
    (_, path, headers), = server.received
    received = tracer.extract(Format.HTTP_HEADERS, headers)
    assert path == '/orders/123'
    assert client.parent_id == parent.span.context.span_id
    assert received.span_id == client.context.span_id
    assert received.trace_id == parent.span.context.trace_id
    assert client.operation_name == 'HTTP GET'  # never the path: low cardinality


def test_request_without_active_span_gets_a_root_span(server, base_url, tracer):
    with TracedSession(tracer=tracer) as session:
        session.get(base_url + '/ok', timeout=_TIMEOUT)

    span = _only_span(tracer)
    (_, _, headers), = server.received
    assert span.parent_id is None
    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == span.context.span_id
    assert tracer.active_span is None  # the client scope was closed


def test_connection_refused_is_recorded_and_reraised(tracer, refused_url):
    with TracedSession(tracer=tracer) as session:
        with pytest.raises(requests.ConnectionError):
            session.get(refused_url, timeout=_TIMEOUT)

    span = _only_span(tracer)
    assert span.tags['error'] is True
    assert 'http.status_code' not in span.tags
    (log,) = span.logs
    assert log.key_values['event'] == 'error'
    assert log.key_values['error.kind'] == 'ConnectionError'
    assert log.key_values['message']
    assert 'Traceback' in log.key_values['stack']
    assert tracer.active_span is None


@pytest.mark.parametrize('query, secret', [
    pytest.param('password=S3CR3T', 'S3CR3T', id='password'),
    pytest.param('a=1;token=S3CR3T', 'S3CR3T', id='semicolon-separated'),
    pytest.param('pin=S3CR3T&shipping=express', 'S3CR3T', id='short-name'),
    pytest.param('code=S3CR3T&state=xyz', 'S3CR3T', id='oauth-code'),
])
def test_a_failed_calls_error_text_has_no_secret(tracer, refused_url, query, secret):
    """The exception message and stack quote the URL: redacted like ``http.url``."""
    with TracedSession(tracer=tracer) as session:
        with pytest.raises(requests.ConnectionError) as raised:
            session.get(f'{refused_url}?{query}', timeout=_TIMEOUT)
    assert secret in str(raised.value)  # the caller's exception is untouched
    span = _only_span(tracer)
    (log,) = span.logs
    assert 'REDACTED' in log.key_values['message']
    text = repr(span.tags) + repr(log.key_values)
    assert secret not in text


def test_secret_query_values_are_redacted_in_the_tag(server, base_url, tracer):
    with TracedSession(tracer=tracer) as session:
        session.get(base_url + '/ok', params={'q': 'shoes', 'access_token': 's3cr3t'},
                    timeout=_TIMEOUT)

    (_, path, _), = server.received
    assert path == '/ok?q=shoes&access_token=s3cr3t'  # the request itself is untouched
    assert _only_span(tracer).tags['http.url'] == base_url + '/ok?q=shoes&access_token=REDACTED'


def test_callers_headers_and_prepared_request_are_not_changed(server, base_url, tracer):
    headers = {'X-Mine': '1'}
    with TracedSession(tracer=tracer) as session:
        prepared = session.prepare_request(requests.Request('GET', base_url + '/ok',
                                                            headers=headers))
        before = dict(prepared.headers)
        response = session.send(prepared, timeout=_TIMEOUT)

    assert headers == {'X-Mine': '1'}
    assert dict(prepared.headers) == before
    assert 'ot-tracer-spanid' in response.request.headers  # what went on the wire


def test_each_redirect_hop_is_its_own_span(server, base_url, tracer):
    with TracedSession(tracer=tracer) as session:
        response = session.get(base_url + '/redirect', timeout=_TIMEOUT)

    spans = tracer.finished_spans()
    received = [tracer.extract(Format.HTTP_HEADERS, h).span_id for _, _, h in server.received]
    assert response.status_code == 200
    assert [s.tags['http.status_code'] for s in spans] == [302, 200]
    assert received == [s.context.span_id for s in spans]


def test_global_tracer_is_looked_up_per_request(server, base_url, tracer):
    session = TracedSession()  # built before the tracer is installed
    previous = opentracing.global_tracer()
    opentracing.set_global_tracer(tracer)
    try:
        session.get(base_url + '/ok', timeout=_TIMEOUT)
    finally:
        opentracing.set_global_tracer(previous)
        session.close()

    assert _only_span(tracer).tags['component'] == 'requests'


class _BrokenTracer(MockTracer):
    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    def start_active_span(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail == 'start':
            raise RuntimeError('tracer bug')
        return super().start_active_span(*args, **kwargs)

    def inject(self, *args: Any, **kwargs: Any) -> None:
        if self.fail == 'inject':
            raise RuntimeError('tracer bug')
        super().inject(*args, **kwargs)


@pytest.mark.parametrize(('fail', 'spans'), [
    pytest.param('start', 0, id='start-fails'),
    pytest.param('inject', 1, id='inject-fails'),
])
def test_tracer_failures_never_break_the_call(server, base_url, fail, spans):
    tracer = _BrokenTracer(fail)
    with TracedSession(tracer=tracer) as session:
        response = session.get(base_url + '/ok', timeout=_TIMEOUT)

    assert response.status_code == 200
    assert len(tracer.finished_spans()) == spans
    (_, _, headers), = server.received
    assert 'ot-tracer-spanid' not in headers


class _RecordingAdapter(BaseAdapter):
    """A custom transport: answers without a network and remembers what it saw."""

    def __init__(self, tracer: MockTracer) -> None:
        super().__init__()
        self.tracer = tracer
        self.seen: list[tuple[Any, dict[str, str]]] = []
        self.marker = 'kept'

    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        self.seen.append((self.tracer.active_span, dict(request.headers)))
        response = requests.Response()
        response.status_code = 201
        response.request = request
        response.url = request.url
        response._content = b''
        return response

    def close(self) -> None:
        pass


def test_instrument_session_wraps_existing_adapters(tracer):
    session = requests.Session()
    custom = _RecordingAdapter(tracer)
    session.mount('http://inner.test/', custom)

    instrument_session(session, tracer=tracer)
    instrument_session(session, tracer=tracer)  # idempotent: one span per request
    response = session.get('http://inner.test/x', timeout=_TIMEOUT)
    session.close()

    span = _only_span(tracer)
    (active, headers), = custom.seen
    assert response.status_code == 201
    assert active is span  # nested work sees the client span
    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == span.context.span_id
    assert session.get_adapter('http://inner.test/x').marker == 'kept'
    assert span.tags['peer.hostname'] == 'inner.test'
    assert span.tags['peer.port'] == 80
    assert 'peer.ipv4' not in span.tags


class _LeakyAdapter(_RecordingAdapter):
    """A transport whose code activates a span and never closes its scope."""

    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        self.tracer.start_active_span('leaked-by-the-transport')
        return super().send(request, **kwargs)


@pytest.mark.parametrize('make_tracer', [
    pytest.param(lambda: MockTracer(), id='threadlocal'),
    pytest.param(lambda: MockTracer(scope_manager=ContextVarsScopeManager()),
                 id='contextvars'),
])
def test_a_scope_left_open_during_the_call_does_not_lose_the_client_span(make_tracer):
    tracer = make_tracer()
    session = requests.Session()
    session.mount('http://inner.test/', _LeakyAdapter(tracer))
    instrument_session(session, tracer=tracer)
    with tracer.start_active_span('caller') as caller:
        assert session.get('http://inner.test/x', timeout=_TIMEOUT).status_code == 201
        assert tracer.active_span is caller.span  # the leak does not outlive the call
    assert [span.operation_name for span in tracer.finished_spans()] == [
        'HTTP GET', 'caller']


@pytest.mark.parametrize('prefix', [
    pytest.param('http://', id='http'),
    pytest.param('https://', id='https'),
])
def test_traced_session_mounts_the_adapter(prefix):
    with TracedSession(max_retries=3) as session:
        adapter = session.get_adapter(prefix + 'example.test/')

    assert isinstance(adapter, TracingAdapter)
    assert isinstance(adapter, HTTPAdapter)
    assert adapter.max_retries.total == 3


def test_a_pickled_session_still_traces(server, base_url, tracer):
    import pickle

    session = pickle.loads(pickle.dumps(TracedSession(tracer=tracer)))
    previous = opentracing.global_tracer()
    opentracing.set_global_tracer(tracer)  # the tracer itself is not pickled
    try:
        response = session.get(base_url + '/ok', timeout=_TIMEOUT)
    finally:
        opentracing.set_global_tracer(previous)
        session.close()

    assert response.status_code == 200
    assert _only_span(tracer).operation_name == 'HTTP GET'
