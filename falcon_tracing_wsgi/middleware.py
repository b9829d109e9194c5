"""TracingMiddleware: one server span per WSGI request, for any OpenTracing 2.x tracer.

Wrap any PEP 3333 application (Falcon first, but nothing here imports Falcon)::

    from falcon_tracing_wsgi import TracingMiddleware
    app = TracingMiddleware(app)                 # tracer: opentracing.global_tracer()

Per request, in this order:

1. **Exclusion.** A request that matches ``FALCON_TRACING_EXCLUDE`` (``[METHOD ]/path``
   rules, whole-path match, ``*`` suffix for a prefix) goes straight to the app: no span,
   no header work. The test is inline in ``__call__`` (see
   :class:`~falcon_tracing_wsgi._wsgi.Exclusion`): per method, one frozenset of exact
   paths and one ``str.startswith`` tuple of prefixes, no regular expression and no
   string built; only OpenTelemetry-style patterns are searched with ``re``.
2. **Extract.** The parent context is extracted from the environ's ``HTTP_*`` keys through
   a read-only view (:class:`~falcon_tracing_wsgi._wsgi.EnvironHeaders`); nothing is
   copied. A missing, malformed or corrupt context starts a new root span; an exception
   from the tracer here is logged at debug level and never reaches the app.
3. **Start** a ``server`` span named after the request method (never the raw path) with
   the standard tags ``span.kind``, ``component``, ``http.method``, ``http.url`` (secret
   query values redacted) and ``peer.ipv4``/``peer.ipv6``/``peer.port``, in one
   ``set_tags(dict)`` call when the span has that method (ours does; any other span gets
   one ``set_tag`` per tag). An unsampled span gets no tags at all and, unless a response
   trace header is configured, no ``start_response`` wrapper and, for a list body, no
   response object: its cost is kept to the minimum.
4. **Inject into the environ.** The server span's context is written back into the
   environ as the tracer's propagation headers, so code that forwards "the incoming
   headers" continues the trace as a child of *this* span. Propagation headers that were
   replaced or are stale (another format's context of the caller) are moved to
   ``environ['falcon_tracing_wsgi.incoming']`` (environ key -> original value). The span
   itself is at ``environ['falcon_tracing_wsgi.span']``.
5. **Run the app with the span active** in the tracer's scope manager (and again while
   each body chunk is produced), so ``tracer.active_span`` is right inside the app and
   inside generators. Afterwards the scope manager is *reset* to what was active before
   (:func:`~falcon_tracing_wsgi.tracer.scope.scope_resetter`), whatever scopes the app
   left open: a leaked ``start_active_span()`` neither stays active in the server's
   thread nor keeps the spans of later requests alive.
6. **start_response** is intercepted: integer ``http.status_code``, ``error`` for 5xx,
   ``exc_info`` recorded, the trace id optionally exposed in a response header, and the
   server's ``write`` callable returned (counted). Status and ``exc_info`` are recorded
   only once the server's own ``start_response`` accepted them.
7. **Finish** when the server closes the response (exactly once): after the body is sent,
   so a streamed span lasts as long as the stream. A close before the body was exhausted
   is tagged ``http.aborted``. If the app raised (or returned something not iterable)
   before any byte was sent, the span gets the 500 the server answers, whatever status
   the app had set, and the exception, which is re-raised unchanged. A response the
   server never closes is reported once it is garbage-collected (``wsgi.unclosed``).

Tag names: steps 3 and 6 write OpenTracing's names (above), OpenTelemetry's stable HTTP
semantic conventions (``http.request.method``, ``url.path``, ``url.query``, ``url.scheme``,
``server.address``/``server.port``, ``client.address``, ``network.peer.*``,
``network.protocol.version``, ``user_agent.original``, ``http.response.status_code``,
``error.type``) or both, per ``config.effective_http_semconv`` (see ``_semconv.py``). The
choice is made in ``__init__``: ``_request_tags`` is bound to the scheme's writer and the
status is written under precomputed keys, so a request never tests the scheme.
``error.type`` is the class name of the exception the request failed with, else (for a
5xx) the type of an exception the app turned into the error response, else the status
code as text. With the stable names, a method outside the known list
(``http_known_methods``) names the span ``HTTP [route]``, as the conventions require.

Naming: the span is renamed ``METHOD {route}`` at the end of the request when a route is
known: the Falcon component sets it from ``req.uri_template``; any other framework can set
``environ['falcon_tracing_wsgi.route']`` or pass ``operation_name(environ)``.

The tracer is looked up per request when none is given, so a tracer installed after
gunicorn forks (``post_fork``) is the one used. If that lookup finds opentracing's no-op
tracer (``TracingMiddleware(app)`` without ``wrap()``, ``install()`` or the gunicorn
hooks), nothing can be traced: the first such request logs one warning per process that
says how to fix it, rather than leaving the user with silence.

Speed: with this package's own tracer (exactly :class:`~falcon_tracing_wsgi.tracer.Tracer`,
whose propagators read only their own headers), steps 2 to 4 take an environ-level fast
path (:func:`_environ_starter`): a request without any trace header skips extraction
after one C-level test, the context is written straight into the environ under environ
keys, and tags go straight into the span's dict. It gives the same environ, span and
tags as the OpenTracing-API path every other tracer takes (a test compares the two).
With OpenTracing's tag names (the default) the sampled span is a
:class:`~falcon_tracing_wsgi.tracer.span.ServerSpan`, and with the stable names alone (the
OTLP reporter's default) a :class:`~falcon_tracing_wsgi.tracer.span.StableServerSpan`:
its standard tags are fields set here and in :meth:`TracingMiddleware.complete`, never
a dict the encoders read back key by key (``span.tags`` still gives them all, in the
order the tag-dict path writes them; ``dup`` keeps the dict). A new trace's headers are written
by a function compiled once per header shape (the bare trace id, the bare span id, a
constant, or template text joined around the ids; see :func:`_header_writer`). With our
scope manager the span is made active by a ``(span, previous)`` pair in its context
variable, no scope object (:func:`~falcon_tracing_wsgi.tracer.scope.bare_activation`).
The response object finishes the span in ``close()`` without further calls, and a list
body (Falcon's) is handed back without ``wrap()``. Shared environ keys and tag names
live in ``_keys.py``, below this module and the Falcon integration.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import os
import re
import string
import sys
import time
import weakref
from typing import Any, Callable, Final, Optional, Tuple

import opentracing
from opentracing import Format
from opentracing import tags as ot_tags

from . import _semconv
from ._keys import (
    ENVIRON_ERROR_TYPE, ENVIRON_EXCEPTION, ENVIRON_INCOMING, ENVIRON_ROUTE, ENVIRON_ROUTE_TAGS,
    ENVIRON_SPAN, TAG_ABORTED, TAG_RESPONSE_SIZE, TAG_ROUTE,  # noqa: F401 (importable here)
)
from ._redact import REDACTED, compile_names
from ._wsgi import (
    ALWAYS_REDACTED, IN_FLIGHT, UNCLOSED, EnvironHeaders, Exclusion, TracedResponse,
    build_exclusion, build_stable_tagger, build_stable_values, build_url_builder, context_ids,
    environ_key, finish_unclosed, set_tags,
)
from .config import TracingConfig
from .tracer.context import SpanContext
from .tracer.scope import bare_activation, scope_resetter
from .tracer.span import ServerSpan, Span, StableServerSpan, add_outcome_tags
from .tracer.tracer import Tracer

__all__ = ['TracingMiddleware', 'abort_in_flight', 'ENVIRON_SPAN', 'ENVIRON_ROUTE',
           'ENVIRON_INCOMING', 'ENVIRON_EXCEPTION']

_log = logging.getLogger(__name__)
_perf_counter = time.perf_counter

#: Trace-context headers of every format we know; stale ones are moved out of the environ.
_CONTEXT_KEYS = ('HTTP_X_B3_TRACEID', 'HTTP_X_B3_SPANID', 'HTTP_X_B3_PARENTSPANID',
                 'HTTP_X_B3_SAMPLED', 'HTTP_X_B3_FLAGS', 'HTTP_B3', 'HTTP_TRACEPARENT',
                 'HTTP_TRACESTATE', 'HTTP_UBER_TRACE_ID', 'HTTP_X_AMZN_TRACE_ID',
                 'HTTP_OT_TRACER_TRACEID', 'HTTP_OT_TRACER_SPANID', 'HTTP_OT_TRACER_SAMPLED')
_CONTEXT_KEY_SET = frozenset(_CONTEXT_KEYS)
_SAFE_HEADER_VALUE = re.compile(r'[0-9A-Za-z:._-]{1,128}').fullmatch
_HTTP_HEADERS: Final = Format.HTTP_HEADERS
_SPAN_KIND = ot_tags.SPAN_KIND
_SERVER = ot_tags.SPAN_KIND_RPC_SERVER
_COMPONENT = ot_tags.COMPONENT
_HTTP_METHOD = ot_tags.HTTP_METHOD
_HTTP_URL = ot_tags.HTTP_URL
_PEER_IPV4 = ot_tags.PEER_HOST_IPV4
_PEER_IPV6 = ot_tags.PEER_HOST_IPV6
_PEER_PORT = ot_tags.PEER_PORT
#: (tracer, start(environ) -> (span, recording), the tracer's scope manager,
#: reset(scope) for that manager, the manager's context variable for a bare activation
#: (or None; see tracer.scope.bare_activation))
_Bound = Tuple[Any, Callable[[dict[str, Any]], Tuple[Any, bool]], Any,
               Callable[[Any], None], Any]
_UNBOUND: _Bound = (None, lambda environ: (None, False), None, lambda scope: None, None)
#: Bound of the cache of injected header names -> environ keys (one entry per distinct
#: set of headers a tracer writes: a handful).
_INJECT_CACHE_SIZE = 64
#: Span names kept per middleware (one per method and route of the app, see complete()).
_ROUTE_NAMES_SIZE = 1024


_weakref = weakref.ref  # PERF: one global lookup per request instead of two
_MISSING = contextvars.Token.MISSING
_new_response = object.__new__


class TracingMiddleware:
    """Trace every request of a WSGI app as an OpenTracing server span.

    Args:
        app: the WSGI application to wrap; kept as ``self.app``.
        tracer: an OpenTracing tracer, or ``None`` to use ``opentracing.global_tracer()``
            looked up at request time.
        config: a :class:`~falcon_tracing_wsgi.config.TracingConfig`; read from the
            environment when omitted.
        **options: :class:`TracingConfig` fields overriding the environment (for example
            ``exclude=['GET /healthz']`` or ``request_hook=func``).

    Raises:
        TypeError: ``app`` is not callable or an option is unknown.
        ConfigError: an option or environment variable has an invalid value.
    """

    def __init__(self, app: Callable[..., Any], tracer: Optional[opentracing.Tracer] = None,
                 *, config: Optional[TracingConfig] = None, **options: Any) -> None:
        if not callable(app):
            raise TypeError(f'TracingMiddleware wraps a WSGI callable, got {app!r}')
        if config is None:
            config = TracingConfig.from_env(**options)
        elif options:
            config = config.replace(**options)
        self.app = app
        self.config = config
        self._tracer = tracer
        self._enabled = config.enabled
        # PERF: a disabled middleware excludes everything, so __call__ tests one thing.
        self._exclusion: Optional[Exclusion] = (
            build_exclusion(config.exclude, config.exclude_patterns) if config.enabled
            else Exclusion((), everything=True))
        self._url = build_url_builder(config.redact_query, config.record_query)
        names = _semconv.names(config.effective_http_semconv)
        self._stable_tags = build_stable_tagger(config.redact_query, config.record_query,
                                                config.http_known_methods,
                                                config.attribute_value_length_limit)
        self._stable_values = build_stable_values(config.redact_query, config.record_query,
                                                  config.http_known_methods,
                                                  config.attribute_value_length_limit)
        # PERF: the scheme is decided here; a request calls one writer and stores under
        # precomputed keys (see complete), never testing the scheme.
        self._request_tags: Callable[[dict[str, Any], str, dict[str, Any]], None] = (
            self._request_tags_old if names.scheme == _semconv.OLD
            else self._request_tags_stable if names.scheme == _semconv.STABLE
            else self._request_tags_dup)
        # The status goes under one key; 'dup' adds the stable one in complete.
        self._status_key = names.status_code[0]
        self._stable_status_key = (names.status_code[1] if names.scheme == _semconv.DUP
                                   else None)
        self._stable_finish = names.stable
        # PERF: with OpenTracing's names (the default) our tracer's server span holds its
        # standard tags as fields (ServerSpan); the other schemes write a tag dict.
        self._server_fields = names.scheme == _semconv.OLD
        # ... and with the stable names alone a StableServerSpan.
        self._stable_fields = names.scheme == _semconv.STABLE
        self._known_methods = frozenset(config.http_known_methods)
        #: The compiled redaction names, also applied to recorded exception texts.
        self.redact_names = compile_names(config.redact_query)
        # The fast path writes our span's tag dict directly, past Span.set_tag's limits:
        # the values that come from the client (URL, captured headers) are cut here.
        self._value_length = config.attribute_value_length_limit
        self._capture_request = tuple(
            (environ_key(name), f'http.request.header.{name}', name in ALWAYS_REDACTED)
            for name in config.capture_request_headers)
        self._capture_response = {
            name: (f'http.response.header.{name}', name in ALWAYS_REDACTED)
            for name in config.capture_response_headers}
        self._trace_header = config.response_trace_header
        self._request_hook = config.request_hook
        self._response_hook = config.response_hook
        self._operation_name = config.operation_name
        self._component = _instrument_framework(app, self.redact_names) or config.component
        #: Whether start_response has anything to record for a recording span.
        self.watch_response = bool(self._capture_response) or self._response_hook is not None
        # (header names injected) -> (their environ keys, the keys whose presence means
        # there is something to move to ENVIRON_INCOMING)
        self._inject_keys: dict[tuple[str, ...], tuple[tuple[str, ...], frozenset[str]]] = {}
        self._bound = _UNBOUND
        #: (method, route) -> (span name, cut route, name length); see complete().
        self._route_names: dict[tuple[str, str], tuple[str, Any, int]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        exclusion = self._exclusion
        if exclusion is not None:
            # PERF: Exclusion.__call__ inlined (no Python call, no regex, no string built).
            method = environ.get('REQUEST_METHOD', '')
            paths, prefixes = exclusion.by_method.get(method) or exclusion.entry(method)
            path = environ.get('PATH_INFO') or '/'
            if path in paths or (prefixes is not None and path.startswith(prefixes)) or (
                    exclusion.search is not None and exclusion.search(path) is not None):
                return self.app(environ, start_response)
        # PERF: the module attribute global_tracer() returns, without the call.
        tracer = self._tracer or opentracing.tracer
        bound = self._bound
        if bound[0] is not tracer:
            bound = self._bind(tracer)
        scope_manager = bound[2]
        reset = bound[3]
        var = bound[4]
        try:
            span, recording = bound[1](environ)
            if var is not None:
                # PERF: our scope manager: active without a scope object (see
                # bare_activation), and back with the token ``restore``: reading what
                # was active before and setting it back costs ~1,300 instructions more.
                # Usually nothing was: the pair's ``previous`` is then None already.
                restore = var.set((span, None))
                previous = restore.old_value
                if previous is not _MISSING and previous is not None:
                    var.set((span, previous))
                undo = var.reset
            else:
                restore = scope_manager.activate(span, False)
                undo = reset
        except Exception:
            _log.warning('tracing failed to start a span; the request goes on untraced',
                         exc_info=True)
            return self.app(environ, start_response)
        if not recording and self._trace_header is None:
            # PERF: a span that records nothing needs no start_response interception and
            # no finish; only a body that runs app code while it is iterated needs it
            # active again (and a response object to do that).
            try:
                result = self.app(environ, start_response)
            finally:
                undo(restore)
            if type(result) is list or type(result) is tuple:
                return result
            return TracedResponse(self, span, environ, start_response, scope_manager,
                                  reset, False).wrap(result)
        # PERF: TracedResponse(self, span, environ, start_response, scope_manager, reset,
        # recording) without its __init__ frame: the same fields, every traced request.
        # The scope manager, the resetter and ``_activate`` matter only to a body that is
        # not a list, and are set with it below (three stores fewer for Falcon's).
        response = _new_response(TracedResponse)
        response.span = span
        response.environ = environ
        response.recording = recording
        response._middleware = self
        response._start_response = start_response
        response._iterable = response._iterator = None
        response._plain = response._activate = response._finished = response.exhausted = False
        response.status_code = response.sent_bytes = 0
        response.headers = response.error_type = None
        if recording:
            if UNCLOSED:
                finish_unclosed()
            # PERF: a weak reference keyed by id, no callback: cheaper than a WeakSet or
            # weakref.finalize; the response removes itself when it finishes.
            IN_FLIGHT[id(response)] = _weakref(response)
        try:
            result = self.app(environ, response.start_response)
        except BaseException as exc:
            response.fail(exc)
            raise
        finally:
            # NOTE: a reset, not scope.close(): close() does nothing when the app left a
            # scope of its own open, and that leak would keep every later span alive.
            undo(restore)
        if type(result) is list:
            # PERF: TracedResponse.wrap() inlined for the usual body (Falcon's): a list
            # runs no app code while iterated and is never a wsgi.file_wrapper.
            response._iterable = result
            response._plain = True
            return response
        response.scope_manager = scope_manager
        response._reset = reset
        return response.wrap(result)

    def _bind(self, tracer: opentracing.Tracer) -> _Bound:
        """Choose how requests start spans on ``tracer``: the environ-level fast path for
        this package's own tracer, the OpenTracing API calls for any other."""
        if type(tracer) is opentracing.Tracer:
            _warn_no_tracer()
        start = _environ_starter(self, tracer) if type(tracer) is Tracer else None
        if start is None:
            start = functools.partial(self._start, tracer)
        scope_manager = tracer.scope_manager
        bound: _Bound = (tracer, start, scope_manager, scope_resetter(scope_manager),
                         bare_activation(scope_manager))
        # NOTE: one tuple, replaced whole, so a thread never pairs a tracer with another
        # tracer's start function.
        self._bound = bound
        return bound

    # -- the steps (called by __call__ and by TracedResponse) ---------------------------
    def _start(self, tracer: opentracing.Tracer, environ: dict[str, Any]) -> tuple[Any, bool]:
        """Extract, start the span, tag it, inject; return ``(span, recording)``.

        Through the OpenTracing API only, for any tracer (see :func:`_environ_starter`
        for this package's own).
        """
        method = environ.get('REQUEST_METHOD') or 'GET'
        try:
            parent = tracer.extract(_HTTP_HEADERS,
                                    EnvironHeaders(environ))  # type: ignore[arg-type]
        except Exception:
            # Client-controlled input: a corrupt context is not our fault, nor an error.
            _log.debug('ignoring an invalid incoming trace context', exc_info=True)
            parent = None
        # NOTE: span.kind goes in at start: some tracers (OpenTelemetry's shim) read the
        # kind only then. A fresh dict, because a tracer may adopt it as its tag dict.
        span = tracer.start_span(method, child_of=parent, tags={_SPAN_KIND: _SERVER},
                                 ignore_active_span=True)
        context = span.context
        # NOTE: our tracer's unsampled spans say so; any other tracer is assumed recording.
        recording = getattr(context, 'sampled', True) is not False
        if recording:
            # PERF: one dict, handed over in one call when the span offers set_tags().
            tags: dict[str, Any] = {}
            self._request_tags(environ, method, tags)
            set_tags(span, tags)
        self._inject(tracer, context, environ)
        environ[ENVIRON_SPAN] = span
        if recording and self._request_hook is not None:
            self._call_hook(self._request_hook, span, environ)
        return span, recording

    def _request_tags_old(self, environ: dict[str, Any], method: str,
                          tags: dict[str, Any]) -> None:
        """Add the request's tags, OpenTracing names (component, method, url, peer,
        captured headers)."""
        tags[_COMPONENT] = self._component
        tags[_HTTP_METHOD] = method
        limit = self._value_length
        url = self._url(environ)
        tags[_HTTP_URL] = url if len(url) <= limit else url[:limit]
        # PERF: _wsgi.peer_tags() inlined (one Python call fewer per sampled request).
        addr = environ.get('REMOTE_ADDR')
        if addr:
            tags[_PEER_IPV6 if ':' in addr else _PEER_IPV4] = addr
        port = environ.get('REMOTE_PORT')
        if port:
            try:
                tags[_PEER_PORT] = int(port)
            except ValueError:
                pass
        for key, tag, redacted in self._capture_request:
            value = environ.get(key)
            if value is not None:
                tags[tag] = REDACTED if redacted else value[:limit]

    def _request_tags_stable(self, environ: dict[str, Any], method: str,
                             tags: dict[str, Any]) -> None:
        """Add the request's tags, OpenTelemetry's stable names."""
        tags[_COMPONENT] = self._component
        self._stable_tags(environ, method, tags)
        limit = self._value_length
        for key, tag, redacted in self._capture_request:
            value = environ.get(key)
            if value is not None:
                tags[tag] = REDACTED if redacted else value[:limit]

    def _request_tags_dup(self, environ: dict[str, Any], method: str,
                          tags: dict[str, Any]) -> None:
        """Add the request's tags under both names (``http/dup``)."""
        self._request_tags_old(environ, method, tags)
        self._stable_tags(environ, method, tags)

    def _inject(self, tracer: opentracing.Tracer, context: Any, environ: dict[str, Any]) -> None:
        headers: dict[str, str] = {}
        try:
            tracer.inject(context, _HTTP_HEADERS, headers)
        except Exception:
            _log.warning('tracer failed to inject the server span context', exc_info=True)
        names = tuple(headers)
        cached = self._inject_keys.get(names)
        if cached is None:
            keys = tuple(environ_key(name) for name in names)
            cached = (keys, _CONTEXT_KEY_SET.union(keys))
            if len(self._inject_keys) < _INJECT_CACHE_SIZE:
                self._inject_keys[names] = cached
        keys, watched = cached
        # PERF: usually (a new trace) the environ holds none of the context headers nor
        # the ones about to be written: one C-level disjointness test, one update.
        if environ.keys().isdisjoint(watched):
            environ.update(zip(keys, headers.values()))
            environ[ENVIRON_INCOMING] = {}
            return
        incoming: dict[str, str] = {}
        for key, value in zip(keys, headers.values()):
            old = environ.get(key)
            if old is not None:
                incoming[key] = old
            environ[key] = value
        for key in _CONTEXT_KEYS:
            if key in environ and key not in keys:
                incoming[key] = environ.pop(key)
        environ[ENVIRON_INCOMING] = incoming

    def add_trace_header(self, response: TracedResponse,
                         headers: list[tuple[str, str]]) -> None:
        """Add the configured response trace header (called by the response object)."""
        trace_id = _trace_id(response.span.context)
        if trace_id is not None:
            headers.append((self._trace_header, trace_id))  # type: ignore[arg-type]

    def on_start_response(self, response: TracedResponse, status: str,
                          headers: list[tuple[str, str]], code: int) -> None:
        """Record what a recording span's accepted ``start_response`` tells (called by
        the response object)."""
        span = response.span
        if self._capture_response:
            for name, value in headers:
                captured = self._capture_response.get(name.lower())
                if captured is not None:
                    span.set_tag(captured[0], REDACTED if captured[1] else value)
        if self._response_hook is not None:
            self._call_hook(self._response_hook, span, response.environ, status, headers)

    def complete(self, response: TracedResponse, finish_time: Optional[float] = None
                 ) -> None:
        """Tag the outcome and finish the span (called once, by the response object).

        PERF: one call for the whole end of a request (the body's size, the outcome
        tags, the span's finish and report): the response calls it straight from
        ``close()``, and the finish of this package's server spans is
        :meth:`Span.finish` inlined (one Python call fewer each).
        """
        span = response.span
        kind = type(span)
        fields = kind is ServerSpan or kind is StableServerSpan
        if response.recording:
            try:
                if response._plain:
                    # PERF: a list body is iterated by its own C iterator (see
                    # TracedResponse.__iter__): how far it got is its length hint.
                    iterator = response._iterator
                    if iterator is not None:
                        body = response._iterable
                        left = iterator.__length_hint__()  # type: ignore[attr-defined]
                        response.exhausted = left == 0
                        # += : bytes the app passed to write() were counted already.
                        # PERF: Falcon's body is one chunk: len() of it is ~1,000
                        # instructions less than sum(map(len, ...)).
                        response.sent_bytes += (
                            len(body[0]) if not left and len(body) == 1
                            else sum(map(len, body if not left
                                         else body[:len(body) - left])))
                environ = response.environ
                route = environ.get(ENVIRON_ROUTE)
                if route is None and self._operation_name is not None:
                    try:
                        route = self._operation_name(environ)
                    except Exception:
                        _log.warning('operation_name hook failed; keeping the method '
                                     'name', exc_info=True)
                if route:
                    # PERF: the span's name and the cut route, made once per (method,
                    # route): ~1,000 instructions less per request. Only a str route is
                    # a key (an operation_name hook may return 1 or True, equal keys).
                    if type(route) is str:
                        key = (environ.get('REQUEST_METHOD') or 'GET', route)
                        named = self._route_names.get(key)
                        if named is None:
                            named = self._route_name(key, environ, route)
                    else:
                        named = self._route_name(None, environ, route)
                    name, route, length = named
                    if fields:
                        # PERF: Span.set_operation_name inlined (the name is a str).
                        span_limit = span._tracer._value_length
                        span.operation_name = (name if length <= span_limit
                                               else name[:span_limit])
                    else:
                        span.set_operation_name(name)
                if fields and not span.merged:
                    # PERF: the outcome goes into the fields; the route's tags are
                    # there already (the Falcon component sets ``route_tags``).
                    span.status_code = response.status_code
                    span.response_size = response.sent_bytes
                    span.aborted = not response.exhausted
                    span.route = route or None
                    if kind is StableServerSpan:
                        span.error_type = self._stable_outcome(
                            response, response.status_code, route)
                elif fields:
                    self._tag_outcome(span, response, route, span.route_tags)
                else:
                    extra = environ.get(ENVIRON_ROUTE_TAGS)
                    # not an outer wrapper's span
                    self._tag_outcome(span, response, route, extra[1]
                                      if extra is not None and extra[0] is span else None)
            except Exception:
                _log.warning('tracing failed while finishing a span', exc_info=True)
        if (fields and finish_time is None and span.duration is None
                and span._perf_start is not None):
            # PERF: Span.finish inlined: the same duration and the same guarded report.
            span.duration = _perf_counter() - span._perf_start
            try:
                span._tracer._report(span)
            except Exception:
                _log.warning('the reporter failed to take a span', exc_info=True)
            return
        try:
            span.finish(finish_time)
        except Exception:
            _log.warning('tracer failed to finish a span', exc_info=True)

    def _route_name(self, key: Optional[tuple[str, str]], environ: dict[str, Any],
                    route: Any) -> tuple[str, Any, int]:
        """``(span name, route cut to the value limit, the name's length)`` of a request's
        route, kept in ``_route_names`` (bounded: routes come from the app, but an
        ``operation_name`` hook may make up names)."""
        name = f'{environ.get("REQUEST_METHOD") or "GET"} {route}'
        limit = self._value_length
        named = (name, route[:limit] if type(route) is str else route, len(name))
        if key is not None:
            if len(self._route_names) >= _ROUTE_NAMES_SIZE:
                self._route_names.clear()
            self._route_names[key] = named
        return named

    def _tag_outcome(self, span: Any, response: TracedResponse, route: Any,
                     route_tags: Any) -> None:
        """The outcome as tags: a span whose outcome has no fields."""
        limit = self._value_length
        kind = type(span)
        # PERF: our own span's tag dict is written directly (no set_tags calls).
        own = kind is Span or kind is ServerSpan or kind is StableServerSpan
        tags: dict[str, Any] = span.tags if own else {}
        code = response.status_code
        add_outcome_tags(tags, self._status_key, code, response.sent_bytes,
                         not response.exhausted, route)
        if route_tags is not None:
            for key, value in route_tags.items():
                # What the app set itself wins, as when these were set before it ran
                # (on our span; another tracer's span cannot be read back).
                if key not in tags:
                    tags[key] = value[:limit] if type(value) is str else value
        # PERF: the OpenTracing names (the default) cost one test more, nothing else.
        if self._stable_finish:
            error_type = self._stable_outcome(response, code, route)
            if code and self._stable_status_key is not None:
                tags[self._stable_status_key] = code  # dup: the second status key
            if error_type is not None:
                tags[_semconv.ERROR_TYPE] = error_type
        if not own:
            set_tags(span, tags)

    def _stable_outcome(self, response: TracedResponse, code: int, route: Any
                        ) -> Optional[str]:
        """What only the stable names have: the span name ``HTTP [route]`` for a method
        outside the known list, as the conventions require (a client must not be able to
        mint span names), set here; and ``error.type`` (see the module docstring),
        returned."""
        method = response.environ.get('REQUEST_METHOD') or 'GET'
        if method not in self._known_methods:
            response.span.set_operation_name(f'HTTP {route}' if route else 'HTTP')
        error_type = response.error_type
        if error_type is None and code >= 500:
            error_type = response.environ.get(ENVIRON_ERROR_TYPE) or str(code)
        return error_type

    @staticmethod
    def _call_hook(hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            _log.warning('tracing hook %r raised; the request goes on', hook, exc_info=True)


def _environ_starter(middleware: TracingMiddleware, tracer: Tracer
                     ) -> Optional[Callable[[dict[str, Any]], tuple[Any, bool]]]:
    """Return ``start(environ) -> (span, recording)`` for this package's own tracer, or
    ``None`` when its propagator cannot take the fast path.

    Same results as :meth:`TracingMiddleware._start` (a test compares the two), with less
    work per request:

    * a request that carries no header of any known trace format (a new trace) is
      recognised with one C-level test and skips extraction altogether;
    * the propagator writes the context straight into the environ, under environ keys
      (``propagator.with_header_names(environ_key)``), instead of into a dict whose names
      are translated afterwards. Before it writes, every header of a known format is
      moved to ``ENVIRON_INCOMING``, so nothing the caller sent is lost;
    * tags go straight into the span's tag dict.

    It needs a propagator that reads only its ``fields`` (so that the keys to watch are
    known; Jaeger's ``uberctx-*`` are not) and offers ``with_header_names``.
    """
    propagator = tracer.propagator
    renamed = getattr(propagator, 'with_header_names', None)
    if renamed is None or not getattr(propagator, 'reads_only_fields', False):
        return None
    inject = renamed(environ_key).inject
    new_trace_headers = {shape: _header_writer(headers)
                         for shape, headers in _new_trace_headers(inject).items()}
    random_ids = tracer._random_ids
    # (16-hex trace id's headers, 32-hex trace id's headers) of each decision
    sampled_headers = (new_trace_headers.get((True, random_ids, 16)),
                       new_trace_headers.get((True, random_ids, 32)))
    unsampled_headers = (new_trace_headers.get((False, random_ids, 16)),
                         new_trace_headers.get((False, random_ids, 32)))
    # PERF: this package's own generators draw trace ids of one width, always random:
    # the writers of a new trace are then known here, (unsampled, sampled), and a
    # request indexes them by its decision. Any other generator (checked, so its width
    # may vary) is looked up by the width of each id.
    width = tracer._trace_id_width
    fixed_headers = ((unsampled_headers[width == 32], sampled_headers[width == 32])
                     if width is not None else None)
    watched = _CONTEXT_KEY_SET.union(environ_key(name) for name in propagator.fields)
    extract = tracer.extract
    start_span = tracer.start_span
    start_trace = tracer._start_trace  # a friend: this is the tracer's own fast path
    request_tags = middleware._request_tags
    request_hook = middleware._request_hook
    span_class = (ServerSpan if middleware._server_fields
                  else StableServerSpan if middleware._stable_fields else Span)
    fields = span_class is not Span  # the kind is a field: no tag dict to make
    stable_values = middleware._stable_values
    component = middleware._component
    url_of = middleware._url
    limit = middleware._value_length
    capture = middleware._capture_request

    def start(environ: dict[str, Any]) -> tuple[Any, bool]:
        method = environ.get('REQUEST_METHOD') or 'GET'
        if environ.keys().isdisjoint(watched):
            # PERF: a ServerSpan's kind is a field: no tag dict to make.
            span = start_trace(method, None if fields else {_SPAN_KIND: _SERVER}, None,
                               span_class)
            context: Any = span._context  # ours: ids set, a definite decision
            trace_id = context.trace_id
            if fixed_headers is not None:
                headers = fixed_headers[context.sampled]
            else:
                # PERF: the tracer's own flag and width, resolved at bind time: no tuple
                # key to build and hash per request (another width falls back to inject()).
                size = len(trace_id)
                headers = ((sampled_headers if context.sampled else unsampled_headers)[
                    size == 32] if (size == 32 or size == 16)
                    and context.random_trace_id is random_ids
                    else new_trace_headers.get((context.sampled, context.random_trace_id,
                                                size)))
            if headers is None:
                inject(context, environ)
                environ[ENVIRON_INCOMING] = {}
            else:
                headers(environ, trace_id, context.span_id)
            if not context.sampled:
                # PERF: an unsampled new trace is an UnsampledSpan: no tags, no type tests.
                environ[ENVIRON_SPAN] = span
                return span, False
        else:
            # Our tracer's extract() answers bad header content with None, never raises.
            parent = extract(_HTTP_HEADERS, EnvironHeaders(environ))
            span = start_span(method, parent, None,
                              None if fields else {_SPAN_KIND: _SERVER}, None, True,
                              span_class)
            incoming = {key: environ.pop(key) for key in watched.intersection(environ)}
            try:
                inject(span.context, environ)
            except Exception:
                # Never lose what the caller sent: the app sees the headers as received.
                _log.warning('tracer failed to inject the server span context',
                             exc_info=True)
                environ.update(incoming)
                incoming = {}
            environ[ENVIRON_INCOMING] = incoming
        environ[ENVIRON_SPAN] = span
        if type(span) is ServerSpan:
            # PERF: the request's tags as fields (see ServerSpan), written inline.
            span.component = component
            span.method = method
            url = url_of(environ)
            span.url = url if len(url) <= limit else url[:limit]
            span.peer_address = environ.get('REMOTE_ADDR') or None
            port = environ.get('REMOTE_PORT')
            try:
                span.peer_port = int(port) if port else None
            except ValueError:
                span.peer_port = None
            span.status_code = span.response_size = 0
            span.aborted = span.merged = False
            span.route = span.route_tags = None
        elif type(span) is StableServerSpan:
            # PERF: the request's tags as fields (see StableServerSpan).
            span.component = component
            (span.method, span.method_original, span.scheme, span.path, span.query,
             span.server_address, span.server_port, span.peer_address, span.peer_port,
             span.client_address, span.protocol_version, span.user_agent
             ) = stable_values(environ, method)
            span.status_code = span.response_size = 0
            span.aborted = span.merged = False
            span.route = span.route_tags = span.error_type = None
        elif type(span) is Span:
            request_tags(environ, method, span._tags)
        else:
            return span, False
        if capture and fields:
            # The field spans' captured headers are tags of their own, cut here (they
            # are written past Span.set_tag's limits).
            own = span._tags
            for key, tag, redacted in capture:
                value = environ.get(key)
                if value is not None:
                    own[tag] = REDACTED if redacted else value[:limit]
        if request_hook is not None:
            middleware._call_hook(request_hook, span, environ)
        return span, True

    return start


#: Two pairs of ids that share no text, to find where the ids go in each header.
_PROBE_IDS = {32: (('0123456789abcdef' * 2, 'fedcba9876543210'),
                   ('a1b2c3d4e5f6a7b8' * 2, '8b7a6f5e4d3c2b1a')),
              16: (('0123456789abcdef', 'fedcba9876543210'),
                   ('a1b2c3d4e5f6a7b8', '8b7a6f5e4d3c2b1a'))}


#: How a header of a new trace is written (see _new_trace_headers).
_TRACE_ID, _SPAN_ID, _CONSTANT, _FORMAT = 0, 1, 2, 3


def _new_trace_headers(inject: Callable[[Any, dict[str, str]], None]
                       ) -> dict[tuple[bool, bool, int], tuple[tuple[str, int, str], ...]]:
    """Turn what ``inject`` writes for a new trace into ``str.format`` templates.

    The context of a new root span always has the same shape (trace id, span id, a
    decision, the W3C random flag; no parent, debug flag, baggage or tracestate), so what
    any format writes for it is a function of the two ids once the two flags are fixed.
    This asks the propagator itself (no format's rules are copied here): for each value
    of the flags it injects probe contexts, replaces the ids in each value by ``{0}`` and
    ``{1}``, and keeps a template only if it reproduces a second probe exactly. Returns
    ``(sampled, random_trace_id, trace id width) -> ((environ key, kind, template), ...)``
    where ``kind`` says whether the value is the trace id, the span id, a constant (then
    ``template`` is the value itself) or a template to format;
    a shape that does not verify (X-Ray splits the trace id) is absent, and the start
    function calls ``inject`` for it instead.
    """
    templates = {}
    for width, ((trace_a, span_a), (trace_b, span_b)) in _PROBE_IDS.items():
        for sampled, random_id in itertools.product((True, False), repeat=2):
            first: dict[str, str] = {}
            second: dict[str, str] = {}
            try:
                inject(SpanContext(trace_a, span_a, None, sampled, False, None, None, None,
                                   random_id), first)
                inject(SpanContext(trace_b, span_b, None, sampled, False, None, None, None,
                                   random_id), second)
            except Exception:
                _log.debug('no header templates for this propagator', exc_info=True)
                continue
            shape = []
            for key, value in first.items():
                if not isinstance(value, str):
                    break
                template = (value.replace('{', '{{').replace('}', '}}')
                            .replace(trace_a, '{0}').replace(span_a, '{1}'))
                if template.format(trace_b, span_b) != second.get(key):
                    break
                kind = (_TRACE_ID if template == '{0}' else _SPAN_ID if template == '{1}'
                        else _CONSTANT if template.format('', '') == value else _FORMAT)
                shape.append((key, kind, value if kind == _CONSTANT else template))
            else:
                if first.keys() == second.keys():
                    templates[(sampled, random_id, width)] = tuple(shape)
    return templates


def _header_writer(headers: tuple[tuple[str, int, str], ...]
                   ) -> Callable[[dict[str, Any], str, str], None]:
    """Compile one shape of :func:`_new_trace_headers` into
    ``write(environ, trace_id, span_id)``, which stores each header and an empty
    ``ENVIRON_INCOMING``.

    PERF: a new trace's headers are written by straight-line code, one store per header
    (the trace id, the span id, a constant, or the template's text joined around the
    ids), instead of a loop that tells the four kinds apart per header. The source is
    made only of ``repr()`` literals (environ keys, constants, template text, the last
    as an f-string whose fields are the two argument names); a template with any field
    other than ``{0}``/``{1}`` (none of ours has one) is kept as a ``str.format`` call.
    """
    lines = ['def write(environ, trace_id, span_id):']
    for key, kind, template in headers:
        if kind == _TRACE_ID:
            value = 'trace_id'
        elif kind == _SPAN_ID:
            value = 'span_id'
        elif kind == _CONSTANT:
            value = repr(template)
        else:
            # PERF: one f-string (a single join), not a chain of ``+`` (a new string per
            # ``+``): ~600 instructions less for a traceparent.
            text = ''
            for literal, field, spec, conversion in string.Formatter().parse(template):
                text += literal.replace('{', '{{').replace('}', '}}')
                if field is None:
                    continue
                if field not in ('0', '1') or spec or conversion:
                    text = ''
                    break
                text += '{trace_id}' if field == '0' else '{span_id}'
            # repr() of the text is a plain string literal; the prefix makes it an
            # f-string whose only fields are the two argument names.
            value = 'f' + repr(text) if text else f'{template!r}.format(trace_id, span_id)'
        lines.append(f'    environ[{key!r}] = {value}')
    lines.append(f'    environ[{ENVIRON_INCOMING!r}] = {{}}')
    namespace: dict[str, Any] = {}
    exec('\n'.join(lines), namespace)  # noqa: S102 - literals only, see above
    return namespace['write']  # type: ignore[no-any-return]


#: The process that logged the no-tracer warning (once per process, forks included).
_warned_pid = 0


def _warn_no_tracer() -> None:
    """Say once per process that requests are not traced, and how to fix it.

    NOTE: a warning, not a tracer built here from the environment: building one is
    bootstrap's job (config -> tracer -> reporter, above this module), and a middleware
    that did it would own a reporter thread nobody closes.
    """
    global _warned_pid
    pid = os.getpid()
    if _warned_pid == pid:
        return
    _warned_pid = pid
    _log.warning(
        'falcon-tracing-wsgi: no tracer is installed (opentracing.global_tracer() is the '
        'no-op tracer), so requests are NOT traced. Wrap the app with '
        'falcon_tracing_wsgi.wrap(app), or call falcon_tracing_wsgi.install() at startup, '
        'or run gunicorn with -c python:falcon_tracing_wsgi.gunicorn, or pass '
        'TracingMiddleware(app, tracer).')


def _trace_id(context: Any) -> Optional[str]:
    ids = context_ids(context)
    if ids is not None and _SAFE_HEADER_VALUE(ids[0]):
        return ids[0]
    return None


def _instrument_framework(app: Any, redact_names: Any) -> Optional[str]:
    """Add the framework component when ``app`` is a Falcon app; return its name."""
    falcon = sys.modules.get('falcon')
    app_class = getattr(falcon, 'App', None) if falcon is not None else None
    if app_class is None or not isinstance(app, app_class):
        return None
    # NOTE: imported lazily so that the middleware never imports Falcon itself.
    from .integrations.falcon import instrument_app
    instrument_app(app, redact_names)
    return 'falcon'


def abort_in_flight(reason: str) -> int:
    """Finish every unfinished server span of this process with an error.

    For a worker that is about to die mid-request (gunicorn's ``worker_abort``): the
    request that timed out is exactly the one whose trace would otherwise be lost.

    Args:
        reason: recorded as the ``message`` of the error log and the
            ``http.aborted.reason`` tag.

    Returns:
        The number of spans finished (responses collected unclosed are finished too,
        as such, and not counted).
    """
    finish_unclosed()
    count = 0
    for ref in list(IN_FLIGHT.values()):
        response = ref()
        if response is None:
            continue  # collected; its __del__ finishes it
        try:
            count += response.abort(reason)
        except Exception:
            _log.warning('could not finish an in-flight span', exc_info=True)
    return count
