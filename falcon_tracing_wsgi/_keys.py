"""The environ keys and tag names that the WSGI wrapper and the integrations share.

A leaf module (it imports nothing): the wrapper (``middleware.py``, ``_wsgi.py``) writes
these keys and the framework integrations (``integrations/falcon.py``) read and write
them, so both import them from here instead of from each other, which would be an
import circle. The old names stay importable from ``middleware`` and ``_wsgi``.
"""

from __future__ import annotations

__all__ = ['ENVIRON_SPAN', 'ENVIRON_ROUTE', 'ENVIRON_ROUTE_TAGS', 'ENVIRON_INCOMING', 'ENVIRON_EXCEPTION',
           'ENVIRON_ERROR_TYPE', 'TAG_ROUTE', 'TAG_RESPONSE_SIZE', 'TAG_ABORTED',
           'TAG_ABORT_REASON', 'TAG_UNCLOSED']

#: environ key of the server span.
ENVIRON_SPAN = 'falcon_tracing_wsgi.span'
#: environ key a framework sets to the matched route template (names the span).
ENVIRON_ROUTE = 'falcon_tracing_wsgi.route'
#: environ key of span tags a framework knows once the route is (Falcon's resource and
#: responder) for one of this package's own plain spans (a ServerSpan or
#: StableServerSpan takes them as its ``route_tags`` field): ``(span, {tag: value})``, added to
#: that span (not to an outer wrapper's) when it finishes, except tags the app set. The
#: dict is never changed once handed over (one per route: encoders keep its text).
ENVIRON_ROUTE_TAGS = 'falcon_tracing_wsgi.route_tags'
#: environ key of the incoming propagation headers that the middleware replaced.
ENVIRON_INCOMING = 'falcon_tracing_wsgi.incoming'
#: environ key of the exception already recorded on the server span: each layer that
#: sees it go by (Falcon's error reporter, start_response's exc_info, the app call, the
#: body) records it only if it is not this one, so it is logged once.
ENVIRON_EXCEPTION = 'falcon_tracing_wsgi.exception'
#: environ key of the type of an exception the app or framework handled itself (turned
#: into an error response); it names ``error.type`` when the response is a 5xx.
ENVIRON_ERROR_TYPE = 'falcon_tracing_wsgi.error_type'

#: Tag names this package adds beyond the OpenTracing standard ones.
TAG_ROUTE = 'http.route'
TAG_RESPONSE_SIZE = 'http.response_size'
TAG_ABORTED = 'http.aborted'
TAG_ABORT_REASON = 'http.aborted.reason'
#: The server dropped the response without calling ``close()`` (PEP 3333 requires it).
TAG_UNCLOSED = 'wsgi.unclosed'
