"""Falcon integration: route-template span names, ``req.context.span``, and exceptions.

The server span belongs to the WSGI wrapper (:class:`~falcon_tracing_wsgi.TracingMiddleware`),
which starts it before Falcon runs and finishes it after the body is sent. This module only
adds what Falcon knows, through Falcon's public API (composition, no patching):

* :class:`TracingComponent`, a Falcon middleware component that
  - exposes the span as ``req.context.span`` (``req.context['span']`` works too, as
    ``falcon.Context`` supports item access), so existing responders that call
    ``req.context['span'].log_kv(...)`` keep working;
  - after routing, records ``req.uri_template`` as the route (the wrapper renames the span
    ``METHOD {uri_template}`` and tags ``http.route``) and the tags ``falcon.resource``
    (the resource class) and ``falcon.responder``; on this package's own spans they
    are the span's route tags at once (the wrapper's server spans) or added by the
    wrapper when the span finishes (a plain span); either way a tag of the same name the
    app set itself is kept, as when they were set before the responder ran. An unrouted
    request (404) keeps the name ``METHOD``: never the raw path.
  The component never fails a request: a ``context_type`` that cannot hold the span (a
  slotted or frozen class) leaves it at ``req.env['falcon_tracing_wsgi.span']`` only.
* exception capture. Falcon 3+ turns an unhandled responder exception into a 500 *inside*
  the app, and has cleared ``sys.exc_info()`` by the time ``process_response`` runs, so
  neither the WSGI layer nor a middleware component can see it.
  - On Falcon 4.4+ :func:`instrument_app` sets an error reporter
    (``App.set_error_reporter``, Falcon's documented instrumentation hook), which "does
    not change how exceptions are handled": the response and the user's error handlers
    stay exactly as they were. ``HTTPError``/``HTTPStatus`` are not recorded as
    exceptions: their status code tells the span whether it is an error (5xx) or not.
    Falcon allows one reporter per app: a reporter the app set *before* it was wrapped
    (an error-tracking hook) is chained, called after ours with the same arguments; one
    set *after* wrapping replaces ours, so call :func:`report_error` from it.
  - On Falcon 3.1 to 4.3 there is no reporter hook, so :func:`instrument_app` registers an
    ``Exception`` error handler that records the exception and then calls the handler
    that was registered for ``Exception`` before (Falcon's default one, which logs the
    traceback to ``wsgi.errors`` and responds 500, or yours), so the response is what it
    was. Falcon keeps one handler per exception class, so a handler *you* register for
    ``Exception`` after wrapping replaces ours (wrap yours with
    :func:`traced_error_handler` to keep the capture).

  NOTE: Falcon has no public getter for the current reporter or handlers; chaining reads
  ``App._report_error`` and ``App._error_handlers`` (present from Falcon 3.1 to 4.4) and
  falls back to Falcon's documented default behaviour when they are absent.

``wrap(app)`` and ``TracingMiddleware(app)`` call :func:`instrument_app` for a
``falcon.App`` automatically. Adding :class:`TracingComponent` yourself as well is harmless:
each component acts on the request's span and writes the same values (no per-request
test of which one goes first: every request would pay it). The last one Falcon calls
gives :func:`report_error` its redaction names; :func:`instrument_app` adds its
component after the app's own middleware, so the wrapper's configured names apply. A
component you add *after* wrapping comes last: give it the same ``redact_names``.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable, Optional

import falcon

from .._redact import DEFAULT_SECRET, Secret
from .._keys import (
    ENVIRON_ERROR_TYPE, ENVIRON_EXCEPTION, ENVIRON_ROUTE, ENVIRON_ROUTE_TAGS, ENVIRON_SPAN,
)
from .._wsgi import record_exception, set_tags
from ..tracer.span import ServerSpan, Span, StableServerSpan, UnsampledSpan

__all__ = ['TracingComponent', 'instrument_app', 'report_error', 'traced_error_handler']

_log = logging.getLogger(__name__)

#: environ key of the component that acted last on this request (its redaction names
#: are report_error's).
_ENVIRON_COMPONENT = 'falcon_tracing_wsgi.falcon_component'

#: Bound of TracingComponent's cache of responder tags (routes x methods of one app).
_RESPONDER_TAGS_SIZE = 1024

#: Apps already instrumented, by id. NOTE: falcon.App has __slots__ without __weakref__,
#: so the app is kept alive here (one entry per app object, in practice one per process),
#: which also keeps its id from being reused by another app.
_INSTRUMENTED: dict[int, Any] = {}


class TracingComponent:
    """Falcon middleware component that names and enriches the server span.

    It does nothing for a request that the WSGI wrapper did not trace (no span in the
    environ), so it is safe in apps that are not wrapped.
    """

    def __init__(self, redact_names: Optional[Secret] = DEFAULT_SECRET) -> None:
        #: Compiled redaction names for URLs in recorded exception texts (the wrapper
        #: passes those of its configuration).
        self.redact_names = redact_names
        # (resource class, method) -> the span tags naming the responder; one entry per
        # route and method, so bounded by the app's routes (cleared if it ever grows big).
        self._responder_tags: dict[tuple[type, str], dict[str, str]] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        env = req.env
        span = env.get(ENVIRON_SPAN)
        if span is None:
            return
        env[_ENVIRON_COMPONENT] = self
        context = req.context
        try:
            context.span = span
        except Exception:
            # A dict-like custom context_type takes items; a slotted or frozen one takes
            # neither, which is not an error: the span stays in the environ.
            try:
                context['span'] = span
            except Exception:
                _log.debug('req.context (%s) cannot hold the span; it stays at '
                           "req.env['%s']", type(context).__name__, ENVIRON_SPAN)

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        env = req.env
        span = env.get(ENVIRON_SPAN)
        if span is None:
            return
        kind = type(span)
        # PERF: our own spans are told by their type (getattr is a builtin call): a
        # field span always records, an UnsampledSpan never does.
        fields = kind is ServerSpan or kind is StableServerSpan
        if not fields and (kind is UnsampledSpan
                           or getattr(span.context, 'sampled', True) is False):
            return  # PERF: nothing here matters to a span that records nothing
        template = req.uri_template
        if template:
            env[ENVIRON_ROUTE] = template
        if resource is None:
            return
        key = (type(resource), req.method)
        # PERF: the class name and responder name are formatted once per route.
        tags = self._responder_tags.get(key)
        if tags is None:
            tags = {'falcon.resource': key[0].__qualname__,
                    'falcon.responder': f'on_{key[1].lower()}'}
            if len(self._responder_tags) >= _RESPONDER_TAGS_SIZE:
                self._responder_tags.clear()
            self._responder_tags[key] = tags
        if fields:
            # PERF: a field (see ServerSpan): a tag of the same name set through the API
            # wins, whenever it is set.
            span.route_tags = tags
            return
        if kind is Span:
            # PERF: handed to the wrapper, which adds them when the span finishes, with
            # its other tags, straight into our span's dict (a set_tags call cost more
            # than the rest of this hook). A tag the app sets meanwhile is kept.
            env[ENVIRON_ROUTE_TAGS] = (span, tags)
            return
        try:
            set_tags(span, tags)
        except Exception:  # a foreign tracer's span; never the reason a request fails
            _log.warning('tracing failed to tag the Falcon responder', exc_info=True)


def report_error(req: falcon.Request, error: BaseException, params: Any = None,
                 handled: bool = True) -> None:
    """Record an exception on the request's server span (a Falcon error reporter).

    Safe to call from your own reporter or error handler: it records each request's first
    exception once, ignores ``HTTPStatus`` and 4xx ``HTTPError``, and never raises.
    """
    try:
        env = req.env
        span = env.get(ENVIRON_SPAN)
        if span is None or env.get(ENVIRON_EXCEPTION) is not None:
            return
        if isinstance(error, falcon.HTTPStatus):
            return
        component = env.get(_ENVIRON_COMPONENT)
        secret: Optional[Secret] = getattr(component, 'redact_names', DEFAULT_SECRET)
        if isinstance(error, falcon.HTTPError):
            if _status_code(error) < 500:
                return
            record_exception(span, error, with_stack=False, mark_error=not handled,
                             secret=secret)
        else:
            # NOTE: a handled exception's response status says whether the request failed
            # (a 500 from the default handler is an error; a 418 by the user's is not).
            record_exception(span, error, mark_error=not handled, secret=secret)
        # The wrapper skips this exception if it propagates out of the app (an error
        # handler that re-raises it): one error log per exception.
        env[ENVIRON_EXCEPTION] = error
        # error.type of a 5xx response (stable HTTP conventions): the exception's class.
        env[ENVIRON_ERROR_TYPE] = type(error).__qualname__
    except Exception:
        _log.warning('tracing failed to record a Falcon exception', exc_info=True)


def traced_error_handler(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an ``Exception`` error handler so the exception is recorded on the span."""
    def handle(req: falcon.Request, resp: falcon.Response, error: Exception,
               params: dict[str, Any]) -> None:
        report_error(req, error, params)
        handler(req, resp, error, params)
    return handle


def _default_exception_handler(req: falcon.Request, resp: falcon.Response, error: Exception,
                               params: dict[str, Any]) -> None:
    # What Falcon's own default Exception handler does, per its documentation.
    req.log_error(traceback.format_exc())
    raise falcon.HTTPInternalServerError()


def instrument_app(app: falcon.App[Any, Any],
                   redact_names: Optional[Secret] = DEFAULT_SECRET) -> None:
    """Add :class:`TracingComponent` and exception capture to a Falcon app, once.

    A reporter (Falcon 4.4+) or ``Exception`` handler (older) the app already has is
    kept and called after ours, so its behaviour is unchanged.

    Args:
        app: the Falcon app.
        redact_names: how URLs in recorded exception texts are redacted (compiled
            query names; the wrapper passes its configuration's).
    """
    if id(app) in _INSTRUMENTED:
        return
    _INSTRUMENTED[id(app)] = app
    app.add_middleware(TracingComponent(redact_names))
    set_reporter = getattr(app, 'set_error_reporter', None)
    if set_reporter is not None:  # Falcon 4.4+
        previous = getattr(app, '_report_error', None)
        set_reporter(report_error if previous is None or previous is report_error
                     else _chained_reporter(previous))
    else:
        handlers = getattr(app, '_error_handlers', None)
        handler = handlers.get(Exception) if isinstance(handlers, dict) else None
        app.add_error_handler(Exception, traced_error_handler(
            handler if callable(handler) else _default_exception_handler))


def _chained_reporter(previous: Callable[..., Any]) -> Callable[..., None]:
    """A reporter that records on the span, then calls the app's own reporter."""
    def report(req: falcon.Request, error: BaseException, params: Any,
               handled: bool) -> None:
        report_error(req, error, params, handled)
        previous(req, error, params, handled)  # the app's, as it behaves without us
    report.__wrapped__ = previous  # type: ignore[attr-defined]
    return report


def _status_code(error: falcon.HTTPError) -> int:
    code = getattr(error, 'status_code', None)
    if isinstance(code, int):
        return code
    try:
        return int(str(error.status)[:3])
    except ValueError:
        return 500
