"""CLIENT spans and trace propagation for ``httpx``, sync and async.

Usage::

    from falcon_tracing_wsgi.integrations.httpx import traced_client, traced_async_client

    with traced_client(timeout=5.0) as http:           # an httpx.Client
        http.get('http://billing/api/invoices')

    async with traced_async_client() as http:           # an httpx.AsyncClient
        await http.get('http://billing/api/invoices')

or wrap the transport yourself, e.g. to keep a custom one::

    httpx.Client(transport=TracingTransport(httpx.HTTPTransport(retries=2)))
    httpx.AsyncClient(transport=AsyncTracingTransport())

Design:

* **A transport, not a patch.** ``httpx`` sends every request through the client's
  transport (``BaseTransport.handle_request`` / ``AsyncBaseTransport.
  handle_async_request``), its documented extension point. Wrapping it means one span
  per HTTP *exchange*: each redirect hop the client follows is its own span.
* **The one-call helpers build a client** (:func:`traced_client`,
  :func:`traced_async_client`) rather than instrument one: a built client's transport
  is private (``client._transport``) and its mounts are per-URL-pattern, so changing a
  client after the fact would mean reaching into httpx internals. The helpers take the
  ``httpx.Client`` arguments; the transport options (``verify``, ``cert``, ``http2``,
  ``limits``, ``proxy``, ...) go to the inner ``HTTPTransport`` as httpx itself does.
  NOTE: like any httpx client given a transport, these clients do not read proxies
  from the environment (``HTTP_PROXY``, ...); pass ``proxy=`` to use one, traced.
* **The span ends when the response is closed**, not when the headers arrive: the
  response's byte stream is wrapped, and its ``close()``/``aclose()`` finishes the span
  exactly once. httpx closes a response after reading its body, when a ``stream()``
  block exits, and on ``response.close()``, so a body that is never read still finishes
  its span once the response is closed. An error while the body is read is recorded.
* **The span is active only while the request is handed over**, then deactivated, and
  finished later by :func:`~falcon_tracing_wsgi.outbound.finish_client_span` with the
  span itself. The sync transport keeps it active while the inner transport runs (as
  the ``requests`` adapter does); the async one deactivates it *before* its first
  ``await``, so it is never left active across a task switch, whatever the scope
  manager. Under asyncio the parent is found with any context-local scope manager
  (this package's default, ``contextvars``): each task sees its own active span.
* **The caller's request is never changed**: the trace headers go into a copy of the
  request's headers, sent in a new ``httpx.Request`` that shares the body stream.
  ``response.request`` is the caller's request (httpx sets it after the transport).
* **Recording goes through** :mod:`falcon_tracing_wsgi.outbound`, like the ``requests``
  integration: same tags, same URL redaction, same error recording.
* **Never break the call**: if the tracer fails the request goes out untraced; the
  exceptions httpx raises are recorded on the span and re-raised unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional

import httpx
import opentracing

from ..outbound import finish_client_span, inject_headers, start_client_span

__all__ = ['TracingTransport', 'AsyncTracingTransport', 'traced_client',
           'traced_async_client']

_COMPONENT = 'httpx'
# httpx.Client arguments that configure its default transport (httpx passes them on).
# ``proxy`` must go to the inner transport: given to the client, it would mount an
# untraced proxy transport in front of ours.
_TRANSPORT_ARGS = ('verify', 'cert', 'http1', 'http2', 'limits', 'proxy')


def _start(tracer: Optional[opentracing.Tracer],
           request: httpx.Request) -> tuple[Optional[opentracing.Scope], httpx.Request]:
    """Start and activate the span; write its context into a copy of the request."""
    scope = start_client_span(request.method, str(request.url), _COMPONENT, tracer,
                              finish_on_close=False)
    if scope is None:
        return None, request
    span = scope.span
    try:
        headers = request.headers.copy()
        inject_headers(headers, span, span.tracer)  # type: ignore[arg-type,unused-ignore]
        outgoing = httpx.Request(request.method, request.url, headers=headers,
                                 stream=request.stream, extensions=request.extensions)
    except Exception:  # pragma: no cover - copying a valid request
        outgoing = request
    return scope, outgoing


class _Outcome:
    """Finishes one span exactly once, with the status and the first error seen."""

    __slots__ = ('_span', '_status')

    def __init__(self, span: opentracing.Span, status: int) -> None:
        self._span: Optional[opentracing.Span] = span
        self._status = status

    def finish(self, error: Optional[BaseException] = None) -> None:
        span, self._span = self._span, None
        if span is not None:
            finish_client_span(span, status_code=self._status, error=error)


class _TracedStream(httpx.SyncByteStream):
    """The response body; finishes the span when closed."""

    def __init__(self, stream: httpx.SyncByteStream, outcome: _Outcome) -> None:
        self._stream = stream
        self._outcome = outcome

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as exc:
            self._outcome.finish(exc)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._outcome.finish()


class _AsyncTracedStream(httpx.AsyncByteStream):
    """The response body of an async request; finishes the span when closed."""

    def __init__(self, stream: httpx.AsyncByteStream, outcome: _Outcome) -> None:
        self._stream = stream
        self._outcome = outcome

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            self._outcome.finish(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._outcome.finish()


def _traced_response(response: httpx.Response, stream: Any) -> httpx.Response:
    return httpx.Response(response.status_code, headers=response.headers, stream=stream,
                          extensions=response.extensions)


class TracingTransport(httpx.BaseTransport):
    """An httpx transport that traces every request it sends, through another transport.

    Args:
        transport: the transport that does the work; default: a new
            ``httpx.HTTPTransport()``. Closing this transport closes it.
        tracer: the tracer to use; ``None`` (default) looks up
            ``opentracing.global_tracer()`` for each request.
    """

    def __init__(self, transport: Optional[httpx.BaseTransport] = None,
                 tracer: Optional[opentracing.Tracer] = None) -> None:
        self.transport = httpx.HTTPTransport() if transport is None else transport
        self._tracer = tracer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` inside a CLIENT span with the trace context in its headers."""
        scope, outgoing = _start(self._tracer, request)
        if scope is None:
            return self.transport.handle_request(request)
        span = scope.span
        try:
            # Active while the inner transport works, as in the requests integration.
            response = self.transport.handle_request(outgoing)
        except BaseException as exc:
            finish_client_span(span, error=exc)
            raise
        finally:
            scope.close()  # deactivates only: the span ends with the response
        outcome = _Outcome(span, response.status_code)
        stream: Any = response.stream  # a SyncByteStream, from a sync transport
        return _traced_response(response, _TracedStream(stream, outcome))

    def close(self) -> None:
        self.transport.close()


class AsyncTracingTransport(httpx.AsyncBaseTransport):
    """The asyncio (or trio) counterpart of :class:`TracingTransport`.

    Args:
        transport: the transport that does the work; default: a new
            ``httpx.AsyncHTTPTransport()``. Closing this transport closes it.
        tracer: the tracer to use; ``None`` (default) looks up
            ``opentracing.global_tracer()`` for each request.
    """

    def __init__(self, transport: Optional[httpx.AsyncBaseTransport] = None,
                 tracer: Optional[opentracing.Tracer] = None) -> None:
        self.transport = httpx.AsyncHTTPTransport() if transport is None else transport
        self._tracer = tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` inside a CLIENT span with the trace context in its headers."""
        scope, outgoing = _start(self._tracer, request)
        if scope is None:
            return await self.transport.handle_async_request(request)
        span = scope.span
        # Deactivated before the first await: with a thread-local scope manager another
        # task would run while it is active, and scopes closed out of order corrupt it.
        scope.close()  # deactivates only: the span ends with the response
        try:
            response = await self.transport.handle_async_request(outgoing)
        except BaseException as exc:
            finish_client_span(span, error=exc)
            raise
        outcome = _Outcome(span, response.status_code)
        stream: Any = response.stream  # an AsyncByteStream, from an async transport
        return _traced_response(response, _AsyncTracedStream(stream, outcome))

    async def aclose(self) -> None:
        await self.transport.aclose()


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    if 'transport' in kwargs:
        raise TypeError('traced_client() builds the transport; to keep your own, use '
                        'httpx.Client(transport=TracingTransport(your_transport))')
    transport_args = {name: kwargs.pop(name) for name in _TRANSPORT_ARGS if name in kwargs}
    if 'trust_env' in kwargs:  # both use it: the client for netrc, the transport for SSL
        transport_args['trust_env'] = kwargs['trust_env']
    return transport_args


def traced_client(tracer: Optional[opentracing.Tracer] = None,
                  **kwargs: Any) -> httpx.Client:
    """Return an ``httpx.Client`` whose requests are traced.

    Args:
        tracer: the tracer to use; ``None`` (default) looks up the global tracer for
            each request.
        **kwargs: ``httpx.Client`` arguments. The transport options (``verify``,
            ``cert``, ``trust_env``, ``http1``, ``http2``, ``limits``, ``proxy``) go to
            the inner ``httpx.HTTPTransport``, as httpx does for its own default.

    Raises:
        TypeError: when ``transport`` is passed (wrap it in :class:`TracingTransport`).
    """
    transport = httpx.HTTPTransport(**_split(kwargs))
    return httpx.Client(transport=TracingTransport(transport, tracer), **kwargs)


def traced_async_client(tracer: Optional[opentracing.Tracer] = None,
                        **kwargs: Any) -> httpx.AsyncClient:
    """Return an ``httpx.AsyncClient`` whose requests are traced.

    Args:
        tracer: the tracer to use; ``None`` (default) looks up the global tracer for
            each request.
        **kwargs: ``httpx.AsyncClient`` arguments; the transport options go to the
            inner ``httpx.AsyncHTTPTransport`` (see :func:`traced_client`).

    Raises:
        TypeError: when ``transport`` is passed (wrap it in
            :class:`AsyncTracingTransport`).
    """
    transport = httpx.AsyncHTTPTransport(**_split(kwargs))
    return httpx.AsyncClient(transport=AsyncTracingTransport(transport, tracer), **kwargs)
