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

``wrap_floor(app, tracer, kind='kept')`` (the ``floor_kept`` variant) adds, written as
cheaply as the rest, what the package keeps on that path beyond the job itself: the
in-flight registry (a weak reference per response, for worker aborts), ``__del__`` on
the response (a response the server never closed), the response size from the list
iterator's length hint and the aborted flag, the span name's and URL's value limits, the
empty ``incoming`` dict in the environ, and a second Falcon hook (``process_request``)
so that ``req.context.span`` is there for a request without a route. That variant is
what the package's default path could cost with every behaviour kept and none of its
generality (other tracers, propagators, options, failures).

``wrap_floor(app, tracer, kind='complete')`` (the ``floor_complete`` variant) adds to
``floor_kept`` what the package must also do on that path for every request, each as a
test or a store written as cheaply, so that it is the floor of the *whole* default job:
the per-request tracer lookup (a tracer installed after a fork), the exclusion test, the
sampler's decision, non-zero ids, ``REQUEST_METHOD`` and ``REMOTE_PORT`` read without
trusting them (a missing method is ``GET``, a bad port no port), the URL as the package
writes it (``SCRIPT_NAME``, the ``Host`` fallback, the query with secret values
redacted), the tests for the options that are off (a request hook, a response trace
header, captured headers, a response hook), an ``exc_info`` given to ``start_response``,
the body's type (a list is handed on, anything else would be wrapped), the app
iterable's own ``close()`` (PEP 3333), and the span name cached per route. It also
takes the two other paths issue 15 budgets, each as cheaply: a request the exclusion
rules exclude (the package's inline ``Exclusion`` test, then the app alone; the Falcon
hooks find no span) and a new trace the sampler does not sample (its ids, its headers
with the decision, an ``UnsampledSpan`` and its context for ``req.context.span`` and
the app's child spans, active during the app; no response object, no finish). These are
the ``floor_excluded`` and ``floor_unsampled`` variants. Branches the benchmarks never
take (incoming trace headers, exclusion patterns, a body that is not a list, an
exception) are present as their tests and raise ``NotImplementedError``: the yardstick
measures the paths a new trace takes, with every test those paths pay.

What ``floor`` leaves out is everything the package adds to that job: other tracers and
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

import opentracing

from falcon_tracing_wsgi._redact import compile_names, redact_query
from falcon_tracing_wsgi._wsgi import build_exclusion
from falcon_tracing_wsgi.config import TracingConfig
from falcon_tracing_wsgi.tracer.context import SpanContext
from falcon_tracing_wsgi.tracer.span import ServerSpan, UnsampledSpan

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


class CompleteFloorComponent(KeptFloorComponent):
    """floor_complete's Falcon hooks: floor_kept's, with the tests the whole job pays: a
    request with no span (excluded) and a span that records nothing (unsampled)."""

    def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        env = req.env
        span = env.get(_SPAN_KEY)
        if span is None or type(span) is UnsampledSpan:
            return
        env[_ROUTE_KEY] = req.uri_template
        key = (type(resource), req.method)
        tags = self._responder_tags.get(key)
        if tags is None:
            tags = self._responder_tags[key] = {'falcon.resource': key[0].__qualname__,
                                                'falcon.responder': f'on_{key[1].lower()}'}
        span.route_tags = tags


class _CompleteResponse(_KeptResponse):
    """floor_complete's response: ``exc_info``, the option tests, the iterable's close."""

    __slots__ = ('watch_response', 'route_names')

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        write = self.server_start_response(status, headers, exc_info)
        code = _STATUS_CODES.get(status)
        if code is None:
            code = _STATUS_CODES[status] = int(status[:3])
        self.code = code
        if exc_info is not None or self.watch_response:
            raise NotImplementedError('the floor records no exc_info and no response hook')
        return write

    def close(self) -> None:
        close = getattr(self.result, 'close', None)
        if close is not None:
            close()
        if self.finished or _IN_FLIGHT.pop(id(self), None) is None:
            return
        self.finished = True
        span = self.span
        span.duration = perf_counter() - span._perf_start
        environ = self.environ
        route = environ.get(_ROUTE_KEY)
        if route:
            key = (span.method, route)
            name = self.route_names.get(key)
            if name is None:
                name = f'{span.method} {route}'
                name = self.route_names[key] = name if len(name) <= _LIMIT else name[:_LIMIT]
            span.operation_name = name
            span.route = route
        span.status_code = self.code
        left = self.iterator.__length_hint__()
        span.response_size = sum(map(len, self.result))
        span.aborted = left != 0
        self.report(span)


_ZERO_TRACE = '0' * 32
_ZERO_SPAN = '0' * 16


class CompleteFloorMiddleware(FloorMiddleware):
    """floor_complete's WSGI wrapper: floor_kept's, plus every test the whole default job
    pays on a new sampled trace (see the module docstring)."""

    def __init__(self, app: Callable[..., Any], tracer: Any) -> None:
        super().__init__(app, tracer)
        self._tracer = tracer  # or None: the global tracer, looked up per request
        self._bound = tracer
        self._const = tracer._const_sampler
        self._secret = compile_names(TracingConfig().redact_query)
        config = TracingConfig.from_env()  # the variant's FALCON_TRACING_EXCLUDE
        self._exclusion = build_exclusion(config.exclude, config.exclude_patterns)
        self._request_hook = self._trace_header = None
        self._capture: tuple[Any, ...] = ()
        self._watch_response = False
        self._route_names: dict[tuple[str, str], str] = {}

    # NOTE: written out once more, like KeptFloorMiddleware.__call__ (see there).
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        exclusion = self._exclusion
        if exclusion is not None:
            # The package's own inline test (Exclusion): one dict, one set, one startswith.
            paths, prefixes = (exclusion.by_method.get(environ.get('REQUEST_METHOD', ''))
                               or exclusion.entry(environ.get('REQUEST_METHOD', '')))
            path = environ.get('PATH_INFO') or '/'
            if path in paths or (prefixes is not None and path.startswith(prefixes)):
                return self.app(environ, start_response)
            if exclusion.search is not None:
                raise NotImplementedError('no exclusion patterns in the floor')
        tracer = self._tracer or opentracing.tracer
        if tracer is not self._bound:
            self._bound = tracer
        if not environ.keys().isdisjoint(_WATCHED):
            raise NotImplementedError('the floor starts new traces only')
        method = environ.get('REQUEST_METHOD') or 'GET'
        ids = getrandbits(192).to_bytes(24, 'big').hex()
        trace_id = ids[:32]
        span_id = ids[32:]
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            raise NotImplementedError('a zero id (probability 2**-64)')
        const = self._const
        sampled = const.decision if const is not None else tracer._decide(trace_id, method)
        environ['HTTP_X_B3_TRACEID'] = trace_id
        environ['HTTP_X_B3_SPANID'] = span_id
        environ['HTTP_X_B3_SAMPLED'] = '1' if sampled else '0'
        environ['HTTP_TRACEPARENT'] = (f'00-{trace_id}-{span_id}-03' if sampled
                                       else f'00-{trace_id}-{span_id}-02')
        environ[_INCOMING_KEY] = {}
        context = _new(SpanContext)
        context.trace_id = trace_id
        context.span_id = span_id
        context.parent_id = context.tracestate = context.extra = None
        context.sampled = sampled
        context.random_trace_id = True
        context.debug = False
        context._baggage = None
        if not sampled:
            # An unsampled trace: a span that records nothing, for req.context.span and
            # the app's child spans, active during the app; no response object.
            unsampled = _new(UnsampledSpan)
            unsampled._tracer = tracer
            unsampled._context = context
            unsampled.operation_name = method
            environ[_SPAN_KEY] = unsampled
            token = _ACTIVE.set(unsampled)
            try:
                result = self.app(environ, start_response)
            finally:
                _ACTIVE.reset(token)
            if type(result) is not list:
                raise NotImplementedError('the floor hands on list bodies only')
            return result
        span = _new(ServerSpan)
        span._tracer = tracer
        span._context = context
        span.operation_name = span.method = method
        span.start_time = time()
        span._perf_start = perf_counter()
        span.duration = span.logs = span.references = span.route = span.route_tags = None
        span._tags = {}
        span.dropped_attributes_count = span.dropped_events_count = 0
        span.component = 'falcon'
        host = environ.get('HTTP_HOST')
        if not host:
            raise NotImplementedError('the floor is always sent a Host header')
        query = environ.get('QUERY_STRING')
        url = (f"{environ.get('wsgi.url_scheme', 'http')}://{host}"
               f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}")
        if query:
            url = f'{url}?{redact_query(query, self._secret)}'
        span.url = url if len(url) <= _LIMIT else url[:_LIMIT]
        span.peer_address = environ.get('REMOTE_ADDR') or None
        port = environ.get('REMOTE_PORT')
        try:
            span.peer_port = int(port) if port else None
        except ValueError:
            span.peer_port = None
        span.status_code = span.response_size = 0
        span.aborted = span.merged = False
        environ[_SPAN_KEY] = span
        if self._capture or self._request_hook is not None:
            raise NotImplementedError('no captured headers and no request hook')
        if self._trace_header is not None:
            raise NotImplementedError('no response trace header')
        response = _CompleteResponse()
        response.span = span
        response.environ = environ
        response.server_start_response = start_response
        response.report = self.report
        response.finished = False
        response.watch_response = self._watch_response
        response.route_names = self._route_names
        _IN_FLIGHT[id(response)] = _weakref(response)
        token = _ACTIVE.set(span)
        try:
            result = self.app(environ, response.start_response)
        finally:
            _ACTIVE.reset(token)
        if type(result) is not list:
            raise NotImplementedError('the floor hands on list bodies only')
        response.result = result
        return response


#: wrap_floor's kinds: (the WSGI wrapper, the Falcon component).
_KINDS = {'floor': (FloorMiddleware, FloorComponent),
          'kept': (KeptFloorMiddleware, KeptFloorComponent),
          'complete': (CompleteFloorMiddleware, CompleteFloorComponent)}


def wrap_floor(app: Any, tracer: Any, kind: str = 'floor') -> FloorMiddleware:
    """``app`` (a Falcon app) behind a floor yardstick, reporting to ``tracer``'s reporter;
    ``kind``: ``floor``, ``kept`` (with the behaviours the package keeps: the
    ``floor_kept`` variant) or ``complete`` (and every test of the whole default job:
    ``floor_complete``)."""
    middleware, component = _KINDS[kind]
    app.add_middleware(component())
    return middleware(app, tracer)
