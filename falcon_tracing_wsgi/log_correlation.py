"""Put the active trace and span ids on log records, to find a request's logs from its trace.

Usage::

    install_log_correlation()   # after logging is configured
    logging.basicConfig(format='%(asctime)s %(levelname)s [%(trace_id)s] %(message)s')

:class:`TraceContextFilter` sets ``record.trace_id`` and ``record.span_id`` to the
lower-case hex ids of the span active in the thread (or task) that handles the record,
and to ``default`` (``''``) when no span is active. It works with any OpenTracing tracer:
ids that are hex strings (ours) are lower-cased, integer ids (Jaeger's, the
``MockTracer``'s) are formatted as zero-padded hex of 16 or 32 digits, the widths the
Zipkin UI shows. It never raises and never rejects a record.

Where the filter goes (decided here):

* **On handlers, not on loggers.** A filter attached to a *logger* only sees records
  logged through that very logger, not those propagated up from child loggers
  (``logging.getLogger('myapp.db')``); a *handler's* filters see every record the
  handler emits. :func:`install_log_correlation` therefore adds the filter to each
  handler of the root logger (or of the logger you pass). Handlers created later -
  ``logging.config.dictConfig`` replaces them - need the filter in their configuration::

      'filters': {'trace': {'()': 'falcon_tracing_wsgi.log_correlation.TraceContextFilter'}},
      'handlers': {'console': {'class': 'logging.StreamHandler', 'filters': ['trace']}},

* **Ids already on a record are kept.** Handlers normally run in the thread that logged,
  where the span is active. A ``QueueHandler`` hands records to another thread; put the
  filter on the ``QueueHandler`` and the ids it sets survive the listener's handlers,
  even when those carry the filter too.
* **The tracer is looked up per record** (the global tracer by default), so a tracer
  installed after gunicorn forks is the one that is asked.

Gunicorn's access log is written after the response has finished, when no span is active
any more: use the response header recipe in the README (``%({x-trace-id}o)s``) instead.
"""

from __future__ import annotations

import logging
from typing import Optional

import opentracing

from ._wsgi import context_ids

__all__ = ['TraceContextFilter', 'install_log_correlation']

_log = logging.getLogger(__name__)

_TRACE_ID = 'trace_id'
_SPAN_ID = 'span_id'


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` attributes to every record; never drops one.

    Args:
        tracer: the tracer whose active span is read; ``None`` (default) looks up
            ``opentracing.global_tracer()`` for each record.
        default: the value of both attributes when no span is active (or its context
            has no ids).
    """

    def __init__(self, tracer: Optional[opentracing.Tracer] = None, default: str = '') -> None:
        super().__init__()
        self._tracer = tracer
        self._default = default

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the ids on ``record`` unless it already has them; always returns True."""
        if hasattr(record, _TRACE_ID):
            return True
        trace_id = span_id = self._default
        try:
            span = (self._tracer or opentracing.global_tracer()).active_span
            if span is not None:
                ids = context_ids(span.context)
                if ids is not None:
                    trace_id, span_id = ids
        except Exception:  # a broken tracer must not lose the log line
            trace_id = span_id = self._default
        record.trace_id = trace_id
        record.span_id = span_id
        return True


def install_log_correlation(
    logger: Optional[logging.Logger] = None,
    tracer: Optional[opentracing.Tracer] = None,
    default: str = '',
) -> TraceContextFilter:
    """Add a :class:`TraceContextFilter` to every handler of ``logger``; idempotent.

    Call it after logging is configured (after ``logging.basicConfig()``,
    ``dictConfig()``, or in gunicorn's ``post_worker_init`` hook): handlers created later
    do not get the filter.

    Args:
        logger: whose handlers get the filter; default: the root logger, whose handlers
            see the records of every logger that propagates.
        tracer: passed to the filter; ``None`` means the global tracer per record.
        default: passed to the filter.

    Returns:
        The filter that was added (to handlers that had no ``TraceContextFilter`` yet).
    """
    target = logger if logger is not None else logging.getLogger()
    trace_filter = TraceContextFilter(tracer=tracer, default=default)
    if not target.handlers:
        _log.warning('log correlation: logger %r has no handlers yet; configure logging '
                     'before calling install_log_correlation()', target.name)
    for handler in target.handlers:
        if not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(trace_filter)
    return trace_filter
