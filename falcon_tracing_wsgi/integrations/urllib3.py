"""CLIENT spans and trace propagation for ``urllib3`` (2.x), one span per attempt.

Usage::

    from falcon_tracing_wsgi.integrations.urllib3 import TracedPoolManager

    http = TracedPoolManager(retries=urllib3.Retry(3))   # a urllib3.PoolManager
    http.request('GET', 'http://billing/api/invoices')

or, for a single host, ``TracedHTTPConnectionPool('billing', 80)`` /
``TracedHTTPSConnectionPool(...)`` in place of urllib3's pool classes.

Design:

* **One span per attempt, hooked at the connection.** urllib3 follows redirects in
  ``PoolManager.urlopen`` (a loop) and retries inside ``HTTPConnectionPool.urlopen``
  (recursion), so a span around either ``urlopen`` would wrap all the attempts, nest
  retries inside each other and show the *last* attempt's status on the first. Every
  attempt, though, writes exactly one request on a connection: the pool builds its
  connections from ``ConnectionCls``, a documented class attribute, and calls the
  connection's public ``request()`` then ``getresponse()``. Our pools set
  ``ConnectionCls`` to a traced subclass, so each retry and each redirect hop is a
  sibling span under the caller's span, with its own status or exception (a refused
  connection is recorded on the attempt that met it, before urllib3 retries).
  :class:`TracedPoolManager` uses the traced pools through ``pool_classes_by_scheme``,
  the manager's public map from scheme to pool class. Nothing is patched: other pools,
  and the package's own exporters (which use ``http.client``), are untouched.
* **The span ends with the body**, not with the headers: the connection builds its
  ``http.client`` response through ``response_class`` (the documented
  ``http.client`` hook, which urllib3 uses too), and our response class finishes the
  span when its body has been read to the end, when it is closed (``response.close()``,
  the end of a chunked body, ``drain_conn()``), or at the latest when it is garbage
  collected. A preloaded body (``preload_content=True``, the default) is read before
  ``urlopen`` returns, so its span has ended by then; a streamed one
  (``preload_content=False``) ends when the caller has read or closed it.
* **The span is active only while the request is written**; finishing later goes
  through :func:`~falcon_tracing_wsgi.outbound.finish_client_span` with the span.
* **The caller's headers are never changed**: the trace headers go into a copy.
* **Recording goes through** :mod:`falcon_tracing_wsgi.outbound`, like the
  ``requests`` integration: same tags, same URL redaction, same error recording.

Not covered: an HTTPS attempt that fails in the TLS handshake - urllib3 connects HTTPS
connections before it writes the request - has no span of its own (the exception still
reaches the caller, whose span records it); ``ProxyManager`` is not traced.
"""

from __future__ import annotations

import http.client
from functools import partial
from typing import Any, Optional

import opentracing
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import HTTPResponse

from ..outbound import finish_client_span, inject_headers, start_client_span

__all__ = ['TracedHTTPConnectionPool', 'TracedHTTPSConnectionPool', 'TracedPoolManager']

try:
    from urllib3 import HTTPHeaderDict  # exported at the top level since urllib3 2.0
except ImportError as exc:  # pragma: no cover - the [urllib3] extra requires 2.x
    raise ImportError('falcon_tracing_wsgi.integrations.urllib3 needs urllib3 2.x: '
                      'pip install "falcon-tracing-wsgi[urllib3]"') from exc

_COMPONENT = 'urllib3'


class _Attempt:
    """One request on one connection: finishes its span exactly once."""

    __slots__ = ('_span', 'status')

    def __init__(self, span: opentracing.Span) -> None:
        self._span: Optional[opentracing.Span] = span
        self.status: Optional[int] = None

    def finish(self, error: Optional[BaseException] = None) -> None:
        span, self._span = self._span, None
        if span is not None:
            finish_client_span(span, status_code=self.status, error=error)


class _TracedResponse(http.client.HTTPResponse):
    """The ``http.client`` response under urllib3's; ends the attempt with the body."""

    def __init__(self, sock: Any, debuglevel: int = 0, method: Optional[str] = None,
                 url: Optional[str] = None, *, attempt: _Attempt) -> None:
        self._attempt = attempt  # first: close() (from __del__) needs it if this fails
        super().__init__(sock, debuglevel, method, url)

    def begin(self) -> None:
        try:
            super().begin()
        except Exception as exc:
            self._attempt.finish(exc)
            raise
        self._attempt.status = self.status

    def read(self, amt: Optional[int] = None) -> bytes:
        try:
            data = super().read(amt)
        except Exception as exc:
            self._attempt.finish(exc)
            raise
        if self.isclosed():  # http.client closes itself at the end of the body
            self._attempt.finish()
        return data

    def read1(self, n: int = -1) -> bytes:
        try:
            data = super().read1(n)
        except Exception as exc:
            self._attempt.finish(exc)
            raise
        if self.isclosed():
            self._attempt.finish()
        return data

    def readinto(self, b: Any) -> int:
        try:
            count = super().readinto(b)
        except Exception as exc:
            self._attempt.finish(exc)
            raise
        if self.isclosed():
            self._attempt.finish()
        return count

    def close(self) -> None:
        try:
            super().close()
        finally:
            # NOTE: also reached from io.IOBase.__del__, for a body nobody closed.
            self._attempt.finish()


class _TracingHTTPConnection(HTTPConnection):
    """Wraps ``request()``/``getresponse()`` of a urllib3 connection in a span."""

    _scheme = 'http'
    _attempt: Optional[_Attempt] = None

    def __init__(self, *args: Any, tracer: Optional[opentracing.Tracer] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracer = tracer

    def _url(self, target: str) -> str:
        if target.startswith(('http://', 'https://')):  # absolute form, via a proxy
            return target
        host = self.host
        if ':' in host:  # an IPv6 literal
            host = '[' + host + ']'
        if self.port and self.port != self.default_port:
            host = '%s:%d' % (host, self.port)
        return self._scheme + '://' + host + target

    def request(self, method: str, url: str, body: Any = None,
                headers: Any = None, **kwargs: Any) -> None:
        if self._attempt is not None:  # a request whose response was never read
            self._attempt.finish()
            self._attempt = None
        send = super().request
        scope = start_client_span(method, self._url(url), _COMPONENT, self._tracer,
                                  finish_on_close=False)
        if scope is None:
            return send(method, url, body, headers, **kwargs)
        span = scope.span
        attempt = _Attempt(span)
        try:
            try:
                outgoing = HTTPHeaderDict(headers)
                inject_headers(outgoing, span, span.tracer)
            except Exception:  # pragma: no cover - copying valid headers
                outgoing = headers
            send(method, url, body, outgoing, **kwargs)
        except BaseException as exc:
            attempt.finish(exc)
            raise
        finally:
            scope.close()  # deactivates only: the span ends with the response
        self._attempt = attempt

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        attempt, self._attempt = self._attempt, None
        if attempt is None:
            return super().getresponse()
        # The http.client hook, set per response: it carries this attempt.
        self.response_class = partial(  # type: ignore[assignment]
            _TracedResponse, attempt=attempt)
        try:
            return super().getresponse()
        except BaseException as exc:
            attempt.finish(exc)
            raise
        finally:
            del self.response_class  # back to the class default


class _TracingHTTPSConnection(_TracingHTTPConnection, HTTPSConnection):
    _scheme = 'https'


class TracedHTTPConnectionPool(HTTPConnectionPool):
    """A :class:`urllib3.HTTPConnectionPool` whose every attempt is a CLIENT span.

    Takes the ``HTTPConnectionPool`` arguments, plus ``tracer=`` (default ``None``: the
    global tracer, looked up for each request).
    """

    ConnectionCls = _TracingHTTPConnection


class TracedHTTPSConnectionPool(HTTPSConnectionPool):
    """The ``https`` counterpart of :class:`TracedHTTPConnectionPool`."""

    ConnectionCls = _TracingHTTPSConnection


class TracedPoolManager(PoolManager):
    """A :class:`urllib3.PoolManager` whose every attempt is a CLIENT span.

    Args:
        num_pools: as for ``PoolManager``.
        headers: as for ``PoolManager``.
        tracer: the tracer to use; ``None`` (default) looks up
            ``opentracing.global_tracer()`` for each request.
        **connection_pool_kw: as for ``PoolManager`` (``retries``, ``timeout``, ...).
    """

    def __init__(self, num_pools: int = 10, headers: Optional[dict[str, str]] = None,
                 tracer: Optional[opentracing.Tracer] = None,
                 **connection_pool_kw: Any) -> None:
        super().__init__(num_pools, headers, **connection_pool_kw)
        # The tracer reaches the connections as a connection keyword (pools pass their
        # unknown keywords on); it cannot go in connection_pool_kw, whose keys must be
        # PoolKey fields.
        self.pool_classes_by_scheme = {  # urllib3 only calls these, as partials allow
            'http': partial(TracedHTTPConnectionPool, tracer=tracer),  # type: ignore[dict-item]
            'https': partial(TracedHTTPSConnectionPool, tracer=tracer),  # type: ignore[dict-item]
        }
