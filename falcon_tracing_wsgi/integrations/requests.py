"""CLIENT spans and trace propagation for the ``requests`` library.

Usage::

    from falcon_tracing_wsgi.integrations.requests import TracedSession

    http = TracedSession()            # a requests.Session; one per thread or process
    http.get('http://billing/api/invoices')

or, for a session you already have (its mounted adapters are wrapped in place)::

    instrument_session(session)

Design:

* **A transport adapter, not a patch.** ``requests`` routes every request through the
  adapter mounted for its URL prefix, a documented extension point. Working at the
  adapter means one span per HTTP *exchange*: each redirect hop is its own span with
  its own peer, as each hop is a separate call the next service sees.
* **The span ends when the response headers have arrived**, which is when the
  adapter returns; ``requests`` reads a non-streamed body afterwards. Reading it
  inside the adapter would change when hooks and body errors run, so we do not.
* **The caller's request is never changed**: the trace headers go into a copy of the
  prepared request (``PreparedRequest.copy()``), so a request that is sent again, or
  a redirect built from it, never carries a stale context. ``response.request`` is the
  copy, i.e. what actually went on the wire.
* **Late binding**: with ``tracer=None`` the global tracer is looked up per request.
* **Never break the call**: if the tracer fails the request goes out untraced; the
  exceptions ``requests`` raises are recorded on the span and re-raised unchanged.
"""

from __future__ import annotations

from typing import Any, Optional

import opentracing
from requests import PreparedRequest, Response, Session
from requests.adapters import BaseAdapter, HTTPAdapter

from ..outbound import finish_client_span, inject_headers, start_client_span

__all__ = ['TracingAdapter', 'TracedSession', 'instrument_session']

_COMPONENT = 'requests'
_PREFIXES = ('http://', 'https://')


def _traced_send(tracer: Optional[opentracing.Tracer], send: Any,
                 request: PreparedRequest, kwargs: dict[str, Any]) -> Response:
    scope = start_client_span(request.method or 'GET', request.url or '', _COMPONENT, tracer)
    if scope is None:
        return send(request, **kwargs)  # type: ignore[no-any-return]
    try:
        outgoing = request.copy()
        inject_headers(outgoing.headers, scope.span,  # type: ignore[arg-type,unused-ignore]
                       scope.span.tracer)
    except Exception:  # pragma: no cover - copy() of a valid PreparedRequest
        outgoing = request
    try:
        response = send(outgoing, **kwargs)
    except BaseException as exc:
        finish_client_span(scope, error=exc)
        raise
    finish_client_span(scope, status_code=response.status_code)
    return response  # type: ignore[no-any-return]


class TracingAdapter(HTTPAdapter):
    """An :class:`~requests.adapters.HTTPAdapter` that traces every request it sends.

    Args:
        tracer: the tracer to use; ``None`` (default) looks up
            ``opentracing.global_tracer()`` for each request.
        **kwargs: passed to :class:`~requests.adapters.HTTPAdapter`
            (``max_retries``, ``pool_connections``, ``pool_maxsize``, ``pool_block``).
    """

    # A class default keeps an unpickled adapter working: HTTPAdapter pickles only the
    # names in its __attrs__, and a tracer is rarely picklable.
    _tracer: Optional[opentracing.Tracer] = None

    def __init__(self, tracer: Optional[opentracing.Tracer] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tracer = tracer

    def send(self, request: PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> Response:
        """Send ``request`` inside a CLIENT span with the trace context in its headers."""
        return _traced_send(self._tracer, super().send, request,
                            {'stream': stream, 'timeout': timeout, 'verify': verify,
                             'cert': cert, 'proxies': proxies})


class _TracingWrapper(BaseAdapter):
    """Traces the requests of an adapter we did not create (keeps its configuration).

    Attribute reads that the wrapper does not answer go to the wrapped adapter, so code
    that inspects ``session.get_adapter(url).max_retries`` keeps working.
    """

    def __init__(self, adapter: BaseAdapter, tracer: Optional[opentracing.Tracer]) -> None:
        super().__init__()
        self.adapter = adapter
        self._tracer = tracer

    def send(self, request: PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> Response:
        return _traced_send(self._tracer, self.adapter.send, request,
                            {'stream': stream, 'timeout': timeout, 'verify': verify,
                             'cert': cert, 'proxies': proxies})

    def close(self) -> None:
        self.adapter.close()

    def __getattr__(self, name: str) -> Any:
        if name == 'adapter':  # not set yet (unpickling): avoid endless recursion
            raise AttributeError(name)
        return getattr(self.adapter, name)


class TracedSession(Session):
    """A :class:`requests.Session` whose ``http://`` and ``https://`` requests are traced.

    Args:
        tracer: the tracer to use; ``None`` (default) looks up the global tracer for
            each request.
        **adapter_kwargs: passed to :class:`TracingAdapter` (``max_retries``, pool sizes).
    """

    def __init__(self, tracer: Optional[opentracing.Tracer] = None,
                 **adapter_kwargs: Any) -> None:
        super().__init__()
        for prefix in _PREFIXES:
            self.mount(prefix, TracingAdapter(tracer=tracer, **adapter_kwargs))


def instrument_session(session: Session,
                       tracer: Optional[opentracing.Tracer] = None) -> Session:
    """Trace the requests of an existing session; idempotent.

    Every adapter mounted *now* is wrapped in place (its configuration, e.g. retries or
    a custom transport, is kept); adapters mounted later are not traced.

    Args:
        session: the session to instrument.
        tracer: the tracer to use; ``None`` (default) looks up the global tracer for
            each request.

    Returns:
        ``session``, for chaining.
    """
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, (TracingAdapter, _TracingWrapper)):
            # Assigning an existing key keeps its place in the prefix-ordered dict.
            session.adapters[prefix] = _TracingWrapper(adapter, tracer)
    return session
