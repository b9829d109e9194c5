"""What only the httpx integration does: spans that end with the response, asyncio, helpers.

The behaviour every client shares is in ``test_clients.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from opentracing import Format
from opentracing.mocktracer import MockTracer

from falcon_tracing_wsgi.integrations.httpx import (
    AsyncTracingTransport, TracingTransport, traced_async_client, traced_client)
from falcon_tracing_wsgi.testing import make_tracer

from ._server import STREAM_SIZE, TIMEOUT


def _read_all(response: httpx.Response) -> None:
    assert len(response.read()) == STREAM_SIZE


def _read_some(response: httpx.Response) -> None:
    assert next(response.iter_bytes(1024))


def _read_nothing(response: httpx.Response) -> None:
    pass


_READS = [
    pytest.param(_read_all, id='body-read'),
    pytest.param(_read_some, id='body-partly-read'),
    pytest.param(_read_nothing, id='body-never-read'),
]


@pytest.mark.parametrize('read', _READS)
def test_streamed_span_ends_when_the_response_is_closed(base_url, tracer, read):
    with traced_client(tracer, timeout=TIMEOUT) as client:
        with client.stream('GET', base_url + '/stream') as response:
            assert tracer.finished_spans() == []  # headers arrived; the body has not ended
            read(response)
        (span,) = tracer.finished_spans()
        response.close()  # again: still one span, finished once

    assert tracer.finished_spans() == [span]
    assert span.tags['http.status_code'] == 200
    assert 'error' not in span.tags


async def _async_read_all(response: httpx.Response) -> None:
    assert len(await response.aread()) == STREAM_SIZE


async def _async_read_some(response: httpx.Response) -> None:
    assert await response.aiter_bytes(1024).__anext__()


async def _async_read_nothing(response: httpx.Response) -> None:
    pass


@pytest.mark.parametrize('read', [
    pytest.param(_async_read_all, id='body-read'),
    pytest.param(_async_read_some, id='body-partly-read'),
    pytest.param(_async_read_nothing, id='body-never-read'),
])
def test_async_streamed_span_ends_when_the_response_is_closed(base_url, tracer, read):
    async def call() -> None:
        async with traced_async_client(tracer, timeout=TIMEOUT) as client:
            async with client.stream('GET', base_url + '/stream') as response:
                assert tracer.finished_spans() == []
                await read(response)
            assert len(tracer.finished_spans()) == 1
            await response.aclose()

    asyncio.run(call())

    (span,) = tracer.finished_spans()
    assert span.tags['http.status_code'] == 200


@pytest.mark.parametrize('is_async', [pytest.param(False, id='sync'),
                                      pytest.param(True, id='async')])
def test_an_error_while_reading_the_body_is_recorded(base_url, tracer, is_async):
    async def call_async() -> None:
        async with traced_async_client(tracer, timeout=TIMEOUT) as client:
            await client.get(base_url + '/short')

    with pytest.raises(httpx.RemoteProtocolError):
        if is_async:
            asyncio.run(call_async())
        else:
            with traced_client(tracer, timeout=TIMEOUT) as client:
                client.get(base_url + '/short')

    (span,) = tracer.finished_spans()
    assert span.tags['http.status_code'] == 200  # the headers said 200
    assert span.tags['error'] is True
    (log,) = span.logs
    assert log.key_values['error.kind'] == 'RemoteProtocolError'


def test_concurrent_async_requests_each_continue_their_own_task_span(base_url):
    tracer, reporter = make_tracer(propagation='b3')  # contextvars scopes

    async def handle(name: str, client: httpx.AsyncClient) -> Any:
        with tracer.start_active_span(name) as scope:
            # Both tasks are in flight together: each must find its own active span.
            await asyncio.gather(client.get(base_url + '/ok'), asyncio.sleep(0))
            assert tracer.active_span is scope.span
            return scope.span

    async def main() -> list[Any]:
        async with traced_async_client(tracer, timeout=TIMEOUT) as client:
            return list(await asyncio.gather(handle('a', client), handle('b', client)))

    parents = asyncio.run(main())

    clients = [s for s in reporter.spans if s.operation_name == 'HTTP GET']
    assert sorted(s.context.parent_id for s in clients) == \
        sorted(p.context.span_id for p in parents)
    assert {s.context.trace_id for s in clients} == {p.context.trace_id for p in parents}


def test_the_request_the_caller_built_is_not_changed(base_url, tracer):
    with traced_client(tracer, timeout=TIMEOUT) as client:
        request = client.build_request('GET', base_url + '/ok', headers={'X-Mine': '1'})
        before = dict(request.headers)
        response = client.send(request)

    assert dict(request.headers) == before
    assert response.request is request


def test_a_custom_inner_transport_is_traced(tracer):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((tracer.active_span, dict(request.headers)))
        return httpx.Response(201, content=b'made')

    transport = TracingTransport(httpx.MockTransport(handler), tracer=tracer)
    with httpx.Client(transport=transport) as client:
        response = client.post('http://inner.test/x', content=b'body')

    (span,) = tracer.finished_spans()
    (active, headers), = seen
    assert response.status_code == 201 and response.text == 'made'
    assert active is span  # work inside the inner transport sees the client span
    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == span.context.span_id
    assert span.tags['peer.hostname'] == 'inner.test'
    assert span.tags['peer.port'] == 80


def test_an_inner_transport_error_is_recorded_and_reraised(tracer):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout('too slow', request=request)

    async def call() -> None:
        transport = AsyncTracingTransport(httpx.MockTransport(handler), tracer=tracer)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get('http://inner.test/x')

    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(call())

    (span,) = tracer.finished_spans()
    assert span.tags['error'] is True
    assert span.logs[0].key_values['error.kind'] == 'ReadTimeout'
    assert tracer.active_span is None


@pytest.mark.parametrize('helper', [pytest.param(traced_client, id='sync'),
                                    pytest.param(traced_async_client, id='async')])
def test_the_helpers_refuse_a_transport_and_say_what_to_do(helper):
    with pytest.raises(TypeError, match='TracingTransport'):
        helper(transport=httpx.MockTransport(lambda request: httpx.Response(200)))


def test_closing_the_client_closes_the_inner_transport():
    closed = []

    class Inner(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        def close(self) -> None:
            closed.append(True)

    with httpx.Client(transport=TracingTransport(Inner(), tracer=MockTracer())):
        pass

    assert closed == [True]


def test_a_proxy_given_to_the_helper_is_traced(server, base_url, tracer):
    # Given to httpx.Client, proxy= would mount an untraced proxy transport in front of
    # ours; the helper hands it to the inner transport instead.
    with traced_client(tracer, proxy=base_url, timeout=TIMEOUT) as client:
        response = client.get('http://inner.test/via-proxy')

    (span,) = tracer.finished_spans()
    (_, path, headers), = server.received
    assert response.status_code == 200
    assert path == 'http://inner.test/via-proxy'  # absolute form: it went to the proxy
    assert span.tags['http.url'] == 'http://inner.test/via-proxy'
    assert tracer.extract(Format.HTTP_HEADERS, headers).span_id == span.context.span_id
