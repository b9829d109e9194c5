"""What every client integration does the same way, table-driven over the clients.

requests, httpx (sync and async) and urllib3 against a real server on 127.0.0.1, traced
by opentracing's MockTracer: same tags, same propagation, same error recording - the
recording itself lives once, in ``falcon_tracing_wsgi.outbound``.
"""

from __future__ import annotations

from typing import Any

import httpx
import opentracing
import pytest
import requests
import urllib3
from opentracing import Format
from opentracing.mocktracer import MockTracer

from ._clients import CLIENTS, _httpx, _httpx_async, _requests, _urllib3


def _only_span(tracer: MockTracer) -> Any:
    spans = tracer.finished_spans()
    assert len(spans) == 1, spans
    return spans[0]


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
@pytest.mark.parametrize(('method', 'path', 'status', 'error'), [
    pytest.param('GET', '/ok', 200, False, id='get-200'),
    pytest.param('POST', '/ok', 200, False, id='post-200'),
    pytest.param('HEAD', '/ok', 200, False, id='head-200'),
    pytest.param('DELETE', '/status/404', 404, False, id='4xx-is-not-an-error'),
    pytest.param('GET', '/status/503', 503, True, id='5xx-is-an-error'),
])
def test_client_span_tags_and_status(server, base_url, tracer, call, component, method, path,
                                     status, error):
    assert call(tracer, method, base_url + path, {}) == status

    span = _only_span(tracer)
    expected = {
        'span.kind': 'client', 'component': component, 'http.method': method,
        'http.url': base_url + path, 'peer.hostname': '127.0.0.1', 'peer.ipv4': '127.0.0.1',
        'peer.port': server.server_address[1], 'http.status_code': status,
    }
    if error:
        expected['error'] = True
    assert span.tags == expected
    assert span.operation_name == 'HTTP ' + method
    assert span.finished


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
def test_server_receives_context_of_the_client_span(server, base_url, tracer, call,
                                                    component):
    with tracer.start_active_span('parent') as parent:
        call(tracer, 'GET', base_url + '/orders/123', {})
        assert tracer.active_span is parent.span  # the client span is no longer active

    client = next(s for s in tracer.finished_spans() if s.operation_name == 'HTTP GET')
    (_, path, headers), = server.received
    received = tracer.extract(Format.HTTP_HEADERS, headers)
    assert path == '/orders/123'
    assert client.parent_id == parent.span.context.span_id
    assert received.span_id == client.context.span_id
    assert received.trace_id == parent.span.context.trace_id


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
def test_request_without_active_span_gets_a_root_span(server, base_url, tracer, call,
                                                      component):
    call(tracer, 'GET', base_url + '/ok', {})

    span = _only_span(tracer)
    (_, _, headers), = server.received
    assert span.parent_id is None
    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == span.context.span_id
    assert tracer.active_span is None


@pytest.mark.parametrize(('call', 'raised', 'kind'), [
    pytest.param(_requests, requests.ConnectionError, 'ConnectionError', id='requests'),
    pytest.param(_httpx, httpx.ConnectError, 'ConnectError', id='httpx'),
    pytest.param(_httpx_async, httpx.ConnectError, 'ConnectError', id='httpx-async'),
    # urllib3 raises MaxRetryError to the caller; the attempt met NewConnectionError.
    pytest.param(_urllib3, urllib3.exceptions.MaxRetryError, 'NewConnectionError',
                 id='urllib3'),
])
def test_connection_refused_is_recorded_and_reraised(tracer, refused_url, call, raised, kind):
    with pytest.raises(raised):
        call(tracer, 'GET', refused_url, {})

    span = _only_span(tracer)
    assert span.tags['error'] is True
    assert 'http.status_code' not in span.tags
    (log,) = span.logs
    assert log.key_values['event'] == 'error'
    assert log.key_values['error.kind'] == kind
    assert log.key_values['message']
    assert 'Traceback' in log.key_values['stack']
    assert tracer.active_span is None


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
def test_secret_query_values_are_redacted_in_the_tag(server, base_url, tracer, call,
                                                     component):
    call(tracer, 'GET', base_url + '/ok?q=shoes&access_token=s3cr3t', {})

    (_, path, _), = server.received
    assert path == '/ok?q=shoes&access_token=s3cr3t'  # the request itself is untouched
    assert _only_span(tracer).tags['http.url'] == base_url + '/ok?q=shoes&access_token=REDACTED'


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
def test_callers_headers_are_not_changed(server, base_url, tracer, call, component):
    headers = {'X-Mine': '1'}

    call(tracer, 'GET', base_url + '/ok', headers)

    (_, _, received), = server.received
    assert headers == {'X-Mine': '1'}
    assert received['x-mine'] == '1'
    assert 'ot-tracer-spanid' in received


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
def test_each_redirect_hop_is_its_own_span(server, base_url, tracer, call, component):
    with tracer.start_active_span('parent') as parent:
        assert call(tracer, 'GET', base_url + '/redirect', {}) == 200

    spans = [s for s in tracer.finished_spans() if s.operation_name == 'HTTP GET']
    received = [tracer.extract(Format.HTTP_HEADERS, h).span_id for _, _, h in server.received]
    assert [s.tags['http.status_code'] for s in spans] == [302, 200]
    assert [s.tags['http.url'] for s in spans] == [base_url + '/redirect', base_url + '/ok']
    assert received == [s.context.span_id for s in spans]
    assert {s.parent_id for s in spans} == {parent.span.context.span_id}  # siblings


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
def test_global_tracer_is_looked_up_per_request(server, base_url, tracer, call, component):
    opentracing.set_global_tracer(tracer)  # restored by the conftest fixture

    call(None, 'GET', base_url + '/ok', {})

    assert _only_span(tracer).tags['component'] == component


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


@pytest.mark.parametrize(('call', 'component'), CLIENTS)
@pytest.mark.parametrize(('fail', 'spans'), [
    pytest.param('start', 0, id='start-fails'),
    pytest.param('inject', 1, id='inject-fails'),
])
def test_tracer_failures_never_break_the_call(server, base_url, call, component, fail, spans):
    tracer = _BrokenTracer(fail)

    assert call(tracer, 'GET', base_url + '/ok', {}) == 200

    assert len(tracer.finished_spans()) == spans
    (_, _, headers), = server.received
    assert 'ot-tracer-spanid' not in headers
