"""What only the urllib3 integration does: a span per attempt, spans that end with the body.

The behaviour every client shares is in ``test_clients.py``.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from opentracing import Format
from opentracing.mocktracer import MockTracer

from falcon_tracing_wsgi.integrations.urllib3 import (
    TracedHTTPConnectionPool, TracedHTTPSConnectionPool, TracedPoolManager)

from ._server import STREAM_SIZE, TIMEOUT


@pytest.fixture()
def manager(tracer: MockTracer) -> Iterator[TracedPoolManager]:
    manager = TracedPoolManager(tracer=tracer, timeout=TIMEOUT)
    yield manager
    manager.clear()


def test_each_status_retry_is_a_sibling_span(server, base_url, tracer, manager):
    retries = urllib3.Retry(total=2, status_forcelist=[503], backoff_factor=0,
                            raise_on_status=False)
    with tracer.start_active_span('parent') as parent:
        response = manager.request('GET', base_url + '/status/503', retries=retries)

    spans = [s for s in tracer.finished_spans() if s.operation_name == 'HTTP GET']
    received = [tracer.extract(Format.HTTP_HEADERS, h).span_id for _, _, h in server.received]
    assert response.status == 503
    assert [s.tags['http.status_code'] for s in spans] == [503, 503, 503]
    assert {s.parent_id for s in spans} == {parent.span.context.span_id}
    assert received == [s.context.span_id for s in spans]  # each attempt its own context


def test_each_connection_retry_is_a_span_with_its_error(tracer, manager):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))  # bound, not listening: refuses connections
    try:
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            manager.request('GET', 'http://127.0.0.1:%d/' % sock.getsockname()[1],
                            retries=urllib3.Retry(connect=2, backoff_factor=0))
    finally:
        sock.close()

    spans = tracer.finished_spans()
    assert len(spans) == 3
    assert [s.logs[0].key_values['error.kind'] for s in spans] == ['NewConnectionError'] * 3
    assert all(s.tags['error'] is True for s in spans)


def _read_all(response: Any) -> None:
    assert len(response.read()) == STREAM_SIZE


def _stream_all(response: Any) -> None:
    assert sum(len(chunk) for chunk in response.stream(8192)) == STREAM_SIZE


def _drain(response: Any) -> None:
    response.drain_conn()


def _close_unread(response: Any) -> None:
    response.close()


def _read_some_then_close(response: Any) -> None:
    assert response.read(1024)
    response.close()


@pytest.mark.parametrize('finish', [
    pytest.param(_read_all, id='read'),
    pytest.param(_stream_all, id='stream'),
    pytest.param(_drain, id='drain_conn'),
    pytest.param(_close_unread, id='close-unread'),
    pytest.param(_read_some_then_close, id='read-some-then-close'),
])
def test_streamed_span_ends_with_the_body(base_url, tracer, manager, finish):
    response = manager.request('GET', base_url + '/stream', preload_content=False)
    assert tracer.finished_spans() == []  # headers arrived; the body has not ended

    finish(response)
    response.release_conn()
    response.close()  # again: still one span, finished once

    (span,) = tracer.finished_spans()
    assert span.tags['http.status_code'] == 200
    assert 'error' not in span.tags


def test_a_streamed_body_nobody_closes_ends_when_collected(base_url, tracer, manager):
    response = manager.request('GET', base_url + '/stream', preload_content=False)
    assert tracer.finished_spans() == []

    del response
    gc.collect()

    (span,) = tracer.finished_spans()
    assert span.tags['http.status_code'] == 200


def test_a_preloaded_body_ends_before_request_returns(base_url, tracer, manager):
    response = manager.request('GET', base_url + '/stream')

    (span,) = tracer.finished_spans()
    assert len(response.data) == STREAM_SIZE
    assert span.finish_time is not None


def test_a_broken_body_is_recorded_on_its_attempt(base_url, tracer, manager):
    with pytest.raises(urllib3.exceptions.ProtocolError):
        manager.request('GET', base_url + '/short', retries=False)

    (span,) = tracer.finished_spans()
    assert span.tags['http.status_code'] == 200
    assert span.tags['error'] is True
    assert span.logs[0].key_values['error.kind'] == 'IncompleteRead'


@pytest.mark.parametrize(('pool', 'scheme', 'port', 'url'), [
    pytest.param(TracedHTTPConnectionPool, 'http', 80, 'http://inner.test/x', id='http'),
    pytest.param(TracedHTTPSConnectionPool, 'https', 443, 'https://inner.test/x',
                 id='https'),
    pytest.param(TracedHTTPConnectionPool, 'http', 8080, 'http://inner.test:8080/x',
                 id='other-port'),
])
def test_a_pool_builds_traced_connections_with_its_url(tracer, pool, scheme, port, url):
    # No network: urllib3's connections connect lazily, so request() fails on connect;
    # the span it started still names the URL the attempt was for.
    instance = pool('inner.test', port, tracer=tracer, timeout=0.01, retries=False)
    with pytest.raises(urllib3.exceptions.HTTPError):
        instance.urlopen('GET', '/x')
    instance.close()

    spans = tracer.finished_spans()
    if scheme == 'https':  # the TLS connect comes before request(): no span (documented)
        assert spans == []
    else:
        (span,) = spans
        assert span.tags['http.url'] == url
        assert span.tags['peer.port'] == port


def test_the_pool_manager_keeps_urllib3_options(server, base_url, tracer):
    manager = TracedPoolManager(tracer=tracer, headers={'X-Default': 'yes'}, maxsize=3)
    try:
        manager.request('GET', base_url + '/ok')
        pool = manager.connection_from_url(base_url)
        assert isinstance(pool, TracedHTTPConnectionPool)
        assert pool.pool is not None and pool.pool.maxsize == 3
    finally:
        manager.clear()

    (_, _, headers), = server.received
    assert headers['x-default'] == 'yes'
    assert 'ot-tracer-spanid' in headers
    assert tracer.finished_spans()[0].tags['http.status_code'] == 200
