"""inject_headers, redact_url and the client span helpers, with any OpenTracing tracer."""

from __future__ import annotations

from typing import Any

import opentracing
import pytest
from opentracing import Format
from opentracing.mocktracer import MockTracer

from falcon_tracing_wsgi.outbound import (
    DEFAULT_REDACTED_NAMES, finish_client_span, inject_headers, redact_url, start_client_span)


@pytest.fixture()
def tracer() -> MockTracer:
    return MockTracer()


class _FailingTracer(MockTracer):
    def inject(self, *args: Any, **kwargs: Any) -> None:
        raise opentracing.UnsupportedFormatException('no headers here')


def test_inject_writes_the_active_span(tracer):
    with tracer.start_active_span('work') as scope:
        headers = inject_headers({'accept': 'text/plain'}, tracer=tracer)

    assert headers['accept'] == 'text/plain'
    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == scope.span.context.span_id


def test_inject_an_explicit_span_over_the_active_one(tracer):
    explicit = tracer.start_span('explicit')
    with tracer.start_active_span('active'):
        headers = inject_headers({}, span=explicit, tracer=tracer)

    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == explicit.context.span_id


@pytest.mark.parametrize('make_tracer', [
    pytest.param(MockTracer, id='no-active-span'),
    pytest.param(opentracing.Tracer, id='noop-tracer'),
])
def test_inject_without_a_span_leaves_headers_alone(make_tracer):
    headers = {'accept': 'text/plain'}

    result = inject_headers(headers, tracer=make_tracer())

    assert result is headers
    assert headers == {'accept': 'text/plain'}


def test_inject_never_raises(caplog):
    tracer = _FailingTracer()
    with tracer.start_active_span('work'), caplog.at_level('DEBUG', 'falcon_tracing_wsgi'):
        headers = inject_headers({'a': '1'}, tracer=tracer)

    assert headers == {'a': '1'}
    assert 'could not inject' in caplog.text


def test_inject_uses_the_global_tracer_at_call_time(tracer):
    previous = opentracing.global_tracer()
    opentracing.set_global_tracer(tracer)
    try:
        with tracer.start_active_span('work') as scope:
            headers = inject_headers({})
    finally:
        opentracing.set_global_tracer(previous)

    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == scope.span.context.span_id


@pytest.mark.parametrize(('url', 'expected'), [
    pytest.param('http://h/p', 'http://h/p', id='no-query'),
    pytest.param('http://h/p?q=shoes&page=2', 'http://h/p?q=shoes&page=2', id='harmless'),
    pytest.param('http://h/p?access_token=abc&q=1', 'http://h/p?access_token=REDACTED&q=1',
                 id='token-substring'),
    pytest.param('http://h/?Password=x', 'http://h/?Password=REDACTED', id='case-insensitive'),
    pytest.param('http://h/?X-Amz-Signature=f00&X-Amz-Credential=AK%2F1',
                 'http://h/?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED', id='presigned'),
    pytest.param('http://h/?api%5Fkey=1', 'http://h/?api%5Fkey=REDACTED', id='encoded-name'),
    pytest.param('http://h/?q=a%20b&secret=&auth', 'http://h/?q=a%20b&secret=REDACTED&auth',
                 id='encoding-kept-flag-kept'),
    pytest.param('http://h/?key=1&key=2', 'http://h/?key=REDACTED&key=REDACTED', id='repeated'),
    pytest.param('https://user:pw@h:8443/x?a=1', 'https://REDACTED@h:8443/x?a=1',
                 id='userinfo'),
    pytest.param('https://tok@h/x', 'https://REDACTED@h/x', id='user-only'),
    pytest.param('http://h/p?token=t#frag', 'http://h/p?token=REDACTED#frag', id='fragment'),
    pytest.param('/relative?session=s', '/relative?session=REDACTED', id='relative'),
    pytest.param('http://[::1/?token=t', 'REDACTED', id='unparsable'),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_url_with_own_names():
    assert redact_url('http://h/?Tenant=a&token=b', names=['TENANT']) == \
        'http://h/?Tenant=REDACTED&token=b'


def test_default_names_are_lower_case():
    assert all(name == name.lower() for name in DEFAULT_REDACTED_NAMES)


@pytest.mark.parametrize(('url', 'peer'), [
    pytest.param('http://10.1.2.3:8080/x', {'peer.hostname': '10.1.2.3', 'peer.ipv4': '10.1.2.3',
                                            'peer.port': 8080}, id='ipv4'),
    pytest.param('https://[2001:DB8::1]/x', {'peer.hostname': '2001:db8::1',
                                             'peer.ipv6': '2001:db8::1', 'peer.port': 443},
                 id='ipv6-default-port'),
    pytest.param('http://Billing.internal/x', {'peer.hostname': 'billing.internal',
                                               'peer.port': 80}, id='name'),
    pytest.param('http://h:99999/x', {'peer.hostname': 'h'}, id='bad-port'),
    pytest.param('ftp://h/x', {'peer.hostname': 'h'}, id='unknown-scheme'),
])
def test_client_span_peer_tags(tracer, url, peer):
    scope = start_client_span('get', url, 'test', tracer=tracer)
    finish_client_span(scope, status_code=200)

    (span,) = tracer.finished_spans()
    assert {k: v for k, v in span.tags.items() if k.startswith('peer.')} == peer
    assert span.operation_name == 'HTTP GET'
    assert span.tags['span.kind'] == 'client'


@pytest.mark.parametrize(('status', 'error', 'tags'), [
    pytest.param(200, None, {'http.status_code': 200}, id='ok'),
    pytest.param(500, None, {'http.status_code': 500, 'error': True}, id='5xx'),
    pytest.param(None, ValueError('boom'), {'error': True}, id='exception'),
    pytest.param(None, KeyboardInterrupt(), {}, id='interrupt-is-not-an-error'),
])
def test_finish_client_span_outcome(tracer, status, error, tags):
    scope = start_client_span('GET', 'http://h/', 'test', tracer=tracer)
    finish_client_span(scope, status_code=status, error=error)

    (span,) = tracer.finished_spans()
    outcome = {k: v for k, v in span.tags.items() if k in ('http.status_code', 'error')}
    assert outcome == tags
    assert len(span.logs) == (1 if isinstance(error, Exception) else 0)
    assert tracer.active_span is None


def test_start_client_span_returns_none_when_the_tracer_fails():
    class Broken(MockTracer):
        def start_active_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError('tracer bug')

    assert start_client_span('GET', 'http://h/', 'test', tracer=Broken()) is None


@pytest.mark.parametrize(('status', 'error', 'tags'), [
    pytest.param(200, None, {'http.status_code': 200}, id='ok'),
    pytest.param(502, None, {'http.status_code': 502, 'error': True}, id='5xx'),
    pytest.param(200, OSError('reset'), {'http.status_code': 200, 'error': True},
                 id='body-error'),
])
def test_a_client_span_can_outlive_its_scope(tracer, status, error, tags):
    # A streamed response: the call returns (scope closed) before the body ends.
    with tracer.start_active_span('parent') as parent:
        scope = start_client_span('GET', 'http://h/', 'test', tracer=tracer,
                                  finish_on_close=False)
        assert tracer.active_span is scope.span
        scope.close()
        assert tracer.active_span is parent.span  # deactivated ...
        assert [s.operation_name for s in tracer.finished_spans()] == []  # ... not finished

    finish_client_span(scope.span, status_code=status, error=error)

    client = next(s for s in tracer.finished_spans() if s.operation_name == 'HTTP GET')
    outcome = {k: v for k, v in client.tags.items() if k in ('http.status_code', 'error')}
    assert outcome == tags
    assert client.parent_id == parent.span.context.span_id
    assert len(client.logs) == (1 if error else 0)
