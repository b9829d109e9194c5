"""The floor yardstick: the sampled request's job done with nothing else (issue 15).

Issue 15's budget (sampled + Zipkin export within 60k instructions over bare Falcon) came
from a throwaway prototype of "the same job". This module is that prototype, kept so the
distance between the package and the floor of its job is measured, not guessed
(``bench_instructions.py --variants bare,traced,floor``).

What it does per request, exactly as the package's default path does for a request that
carries no trace headers (a new trace):

* the same test that no trace header came in (the same watched environ keys);
* ids from :func:`random.getrandbits`, one call per id, as ``tracer/ids.py``;
* the same environ headers for the app's outgoing calls (B3's three, ``traceparent``);
* the package's own :class:`~falcon_tracing_wsgi.tracer.span.ServerSpan` with the same
  fields (method, URL, peer address and port, component, route, the Falcon responder
  tags, status, response size), active in a context variable during the app;
* the status taken in ``start_response``, the span finished in ``close()``, named
  ``METHOD route``, and handed to the package's reporter (so encoding and export are the
  package's own: the same Zipkin JSON to the same sink);
* one Falcon hook (``process_resource``) that gives ``req.context.span`` and the route.

``wrap_floor(app, tracer, kept=True)`` (the ``floor_kept`` variant) adds, written as
cheaply as the rest, what the package keeps on that path beyond the job itself: the
in-flight registry (a weak reference per response, for worker aborts), ``__del__`` on
the response (a response the server never closed), the response size from the list
iterator's length hint and the aborted flag, the span name's and URL's value limits, the
empty ``incoming`` dict in the environ, and a second Falcon hook (``process_request``)
so that ``req.context.span`` is there for a request without a route. That variant is
what the package's default path could cost with every behaviour kept and none of its
generality (other tracers, propagators, options, failures).

What it leaves out is everything the package adds to that job: other tracers and
propagators, options (exclusions, hooks, captured headers, limits, redaction, stable
names), incoming trace headers, failures (an app that raises, a server that never calls
``close()``, worker aborts), streamed and file bodies, the aborted flag, and
``req.context.span`` for a request without a route. It is a yardstick, never an
implementation: nothing imports it but the benchmarks.
"""

from __future__ import annotations

import contextvars
from random import getrandbits
from time import perf_counter, time
from weakref import ref as _weakref
from typing import Any, Callable

from falcon_tracing_wsgi.tracer.context import SpanContext
from falcon_tracing_wsgi.tracer.span import ServerSpan

_new = object.__new__
_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar('floor_span', default=None)
#: The environ keys of every trace header the package reads (its default propagators'
#: fields and the other formats it recognises), as the package's own test uses them.
_WATCHED = frozenset({
    'HTTP_B3', 'HTTP_BAGGAGE', 'HTTP_OT_TRACER_SAMPLED', 'HTTP_OT_TRACER_SPANID',
    'HTTP_OT_TRACER_TRACEID', 'HTTP_TRACEPARENT', 'HTTP_TRACESTATE', 'HTTP_UBER_TRACE_ID',
    'HTTP_X_AMZN_TRACE_ID', 'HTTP_X_B3_FLAGS', 'HTTP_X_B3_PARENTSPANID', 'HTTP_X_B3_SAMPLED',
    'HTTP_X_B3_SPANID', 'HTTP_X_B3_TRACEID'})
_SPAN_KEY = 'floor.span'
_ROUTE_KEY = 'floor.route'
_STATUS_CODES: dict[str, int] = {}
_INCOMING_KEY = 'floor.incoming'
_LIMIT = 4096
#: floor_kept's in-flight registry (id -> weak reference) and unclosed responses.
_IN_FLIGHT: dict[int, Any] = {}
_UNCLOSED: list[Any] = []


class _Response:
    """The WSGI iterable and ``start_response`` of one request."""

    __slots__ = ('span', 'environ', 'server_start_response', 'result', 'code', 'report')

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        write = self.server_start_response(status, headers, exc_info)
        code = _STATUS_CODES.get(status)
        if code is None:
            code = _STATUS_CODES[status] = int(status[:3])
        self.code = code
        return write

    def __iter__(self) -> Any:
        return iter(self.result)

    def close(self) -> None:
        span = self.span
        span.duration = perf_counter() - span._perf_start
        route = self.environ.get(_ROUTE_KEY)
        if route:
            span.operation_name = f'{span.method} {route}'
            span.route = route
        span.status_code = self.code
        span.response_size = sum(map(len, self.result))
        self.report(span)


class _KeptResponse(_Response):
    """floor_kept's response: the registry, ``__del__``, size, aborted, the name limit."""

    __slots__ = ('iterator', 'finished', '__weakref__')

    def __iter__(self) -> Any:
        self.iterator = iterator = iter(self.result)
        return iterator

    def __del__(self) -> None:
        if not self.finished:
            _UNCLOSED.append(self)

    def close(self) -> None:
        if self.finished or _IN_FLIGHT.pop(id(self), None) is None:
            return
        self.finished = True
        span = self.span
        span.duration = perf_counter() - span._perf_start
        route = self.environ.get(_ROUTE_KEY)
        if route:
            name = f'{span.method} {route}'
            span.operation_name = name if len(name) <= _LIMIT else name[:_LIMIT]
            span.route = route
        span.status_code = self.code
        left = self.iterator.__length_hint__()
        span.response_size = sum(map(len, self.result))
        span.aborted = left != 0
        self.report(span)


class FloorMiddleware:
    """The floor's WSGI wrapper (see the module docstring)."""

    def __init__(self, app: Callable[..., Any], tracer: Any) -> None:
        self.app = app
        self.tracer = tracer
        self.report = tracer.reporter.report

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.keys().isdisjoint(_WATCHED):
            raise NotImplementedError('the floor starts new traces only')
        trace_id = getrandbits(128).to_bytes(16, 'big').hex()
        span_id = getrandbits(64).to_bytes(8, 'big').hex()
        environ['HTTP_X_B3_TRACEID'] = trace_id
        environ['HTTP_X_B3_SPANID'] = span_id
        environ['HTTP_X_B3_SAMPLED'] = '1'
        environ['HTTP_TRACEPARENT'] = f'00-{trace_id}-{span_id}-03'
        context = _new(SpanContext)
        context.trace_id = trace_id
        context.span_id = span_id
        context.parent_id = context.tracestate = context.extra = None
        context.sampled = context.random_trace_id = True
        context.debug = False
        context._baggage = None
        span = _new(ServerSpan)
        span._tracer = self.tracer
        span._context = context
        span.operation_name = span.method = environ['REQUEST_METHOD']
        span.start_time = time()
        span._perf_start = perf_counter()
        span.duration = span.logs = span.references = span.route = span.route_tags = None
        span._tags = {}
        span.dropped_attributes_count = span.dropped_events_count = 0
        span.component = 'falcon'
        span.url = f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}" \
                   f"{environ['PATH_INFO']}"
        span.peer_address = environ.get('REMOTE_ADDR')
        span.peer_port = int(environ['REMOTE_PORT'])
        span.status_code = span.response_size = 0
        span.aborted = span.merged = False
        environ[_SPAN_KEY] = span
        response = _Response()
        response.span = span
        response.environ = environ
        response.server_start_response = start_response
        response.report = self.report
        token = _ACTIVE.set(span)
        try:
            response.result = self.app(environ, response.start_response)
        finally:
            _ACTIVE.reset(token)
        return response


class FloorComponent:
    """The floor's one Falcon hook: ``req.context.span``, the route, the responder."""

    def __init__(self) -> None:
        self._responder_tags: dict[tuple[type, str], dict[str, str]] = {}

    def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        env = req.env
        span = env[_SPAN_KEY]
        req.context.span = span
        env[_ROUTE_KEY] = req.uri_template
        key = (type(resource), req.method)
        tags = self._responder_tags.get(key)
        if tags is None:
            tags = self._responder_tags[key] = {'falcon.resource': key[0].__qualname__,
                                                'falcon.responder': f'on_{key[1].lower()}'}
        span.route_tags = tags


class KeptFloorMiddleware(FloorMiddleware):
    """floor_kept's WSGI wrapper: the floor's, plus the behaviours the package keeps."""

    # NOTE: FloorMiddleware.__call__ written again with the additions, not shared through
    # a helper or super(): each yardstick must be the cheapest form of its job, and a
    # shared step would put a Python call into both.
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.keys().isdisjoint(_WATCHED):
            raise NotImplementedError('the floor starts new traces only')
        trace_id = getrandbits(128).to_bytes(16, 'big').hex()
        span_id = getrandbits(64).to_bytes(8, 'big').hex()
        environ['HTTP_X_B3_TRACEID'] = trace_id
        environ['HTTP_X_B3_SPANID'] = span_id
        environ['HTTP_X_B3_SAMPLED'] = '1'
        environ['HTTP_TRACEPARENT'] = f'00-{trace_id}-{span_id}-03'
        environ[_INCOMING_KEY] = {}
        context = _new(SpanContext)
        context.trace_id = trace_id
        context.span_id = span_id
        context.parent_id = context.tracestate = context.extra = None
        context.sampled = context.random_trace_id = True
        context.debug = False
        context._baggage = None
        span = _new(ServerSpan)
        span._tracer = self.tracer
        span._context = context
        span.operation_name = span.method = environ['REQUEST_METHOD']
        span.start_time = time()
        span._perf_start = perf_counter()
        span.duration = span.logs = span.references = span.route = span.route_tags = None
        span._tags = {}
        span.dropped_attributes_count = span.dropped_events_count = 0
        span.component = 'falcon'
        url = f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}{environ['PATH_INFO']}"
        span.url = url if len(url) <= _LIMIT else url[:_LIMIT]
        span.peer_address = environ.get('REMOTE_ADDR')
        span.peer_port = int(environ['REMOTE_PORT'])
        span.status_code = span.response_size = 0
        span.aborted = span.merged = False
        environ[_SPAN_KEY] = span
        response = _KeptResponse()
        response.span = span
        response.environ = environ
        response.server_start_response = start_response
        response.report = self.report
        response.finished = False
        _IN_FLIGHT[id(response)] = _weakref(response)
        token = _ACTIVE.set(span)
        try:
            response.result = self.app(environ, response.start_response)
        finally:
            _ACTIVE.reset(token)
        return response


class KeptFloorComponent(FloorComponent):
    """floor_kept's Falcon hooks: ``req.context.span`` in ``process_request``."""

    def process_request(self, req: Any, resp: Any) -> None:
        span = req.env.get(_SPAN_KEY)
        if span is not None:
            req.context.span = span

    def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        env = req.env
        env[_ROUTE_KEY] = req.uri_template
        key = (type(resource), req.method)
        tags = self._responder_tags.get(key)
        if tags is None:
            tags = self._responder_tags[key] = {'falcon.resource': key[0].__qualname__,
                                                'falcon.responder': f'on_{key[1].lower()}'}
        env[_SPAN_KEY].route_tags = tags


def wrap_floor(app: Any, tracer: Any, kept: bool = False) -> FloorMiddleware:
    """``app`` (a Falcon app) behind the floor, reporting to ``tracer``'s reporter;
    ``kept``: with the behaviours the package keeps (the ``floor_kept`` variant)."""
    if kept:
        app.add_middleware(KeptFloorComponent())
        return KeptFloorMiddleware(app, tracer)
    app.add_middleware(FloorComponent())
    return FloorMiddleware(app, tracer)
