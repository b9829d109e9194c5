"""Spans: a sampled :class:`Span` that records, and an :class:`UnsampledSpan` that does not.

Design:

* The tracer picks the class when the span starts, from the sampling decision, so no
  method ever asks "am I sampled?". An unsampled span (the common case under a low
  sampling rate) keeps only what must propagate, its context and baggage: ``set_tag``
  and ``log_kv`` are empty methods, ``finish`` does nothing and it is never reported.
* :class:`Span` is what reporters and encoders read after :meth:`Span.finish`:
  ``context``, ``operation_name``, ``start_time`` (epoch seconds), ``duration`` (seconds,
  ``None`` until finished), ``tags`` (a dict) and ``logs`` (a list of
  ``(timestamp, fields)`` or ``None``).
* ``duration`` comes from :func:`time.perf_counter` when the tracer chose both ends of
  the span, so a wall-clock step (NTP) during a request cannot make it wrong or negative;
  with an explicit ``start_time`` or ``finish_time`` it is the difference of the two wall
  times, never below zero.
* :meth:`Span.finish` takes effect once: the first call records the duration and hands
  the span to the reporter; later calls (a ``with`` block around a span the code also
  finishes by hand) are ignored.
* Baggage is copy-on-write: :meth:`Span.set_baggage_item` replaces the span's context with
  a new one, so a context already handed to a child or injected is never changed.
* A span is **bounded while it records** (:mod:`~falcon_tracing_wsgi.tracer.limits`):
  the tracer decides its :class:`~.limits.SpanLimits` once, and ``set_tag`` compares a
  length and a count before it stores; ``log_kv`` makes a bounded copy of the fields.
  What is dropped is counted on the span (:attr:`Span.dropped_attributes_count`,
  :attr:`Span.dropped_events_count`, OTLP's names) and the encoders report it.
  Baggage follows the W3C limits (180 items, 4096 bytes per item, 8192 in all), beyond
  which it could not be propagated anyway.
* A span reads its tracer through the :class:`SpanOwner` protocol (the limits and
  ``_report``), so this module does not import ``tracer.py``, which imports it.
* ``span.context`` is a property with a C getter (``operator.attrgetter``) instead of
  the base class's Python one: the middleware, the Falcon component and the encoders
  read it on every request.
* Both classes use ``__slots__`` for their fields. ``opentracing.Span`` has no slots, so
  instances still get a ``__dict__`` when something assigns a new attribute (``mock``
  patching ``finish`` in the OpenTracing conformance suite does); normal use never creates
  it.
"""

from __future__ import annotations

import logging
import time
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Protocol

import opentracing

from ..propagation.baggage import MAX_BYTES, MAX_MEMBER_BYTES, MAX_MEMBERS
from .context import SpanContext
from .limits import _INT_BOUND, bounded_event, bounded_value, is_error_event

__all__ = ['Span', 'UnsampledSpan', 'SpanOwner']

_log = logging.getLogger(__name__)

_time = time.time
_perf_counter = time.perf_counter
_NO_TAGS: Mapping[str, Any] = MappingProxyType({})
_INT_LOW = -_INT_BOUND
_INT_HIGH = _INT_BOUND


class SpanOwner(Protocol):
    """What a span reads from the tracer that started it (the tracer's limits, decided
    once, and its reporter's ``report``).

    NOTE: a protocol here rather than an import of ``tracer.py``, which imports this
    module: no import circle, not even one for the type checker.
    """

    @property
    def _value_length(self) -> int: ...
    @property
    def _attribute_count(self) -> int: ...
    @property
    def _event_count(self) -> int: ...
    @property
    def _event_attribute_count(self) -> int: ...
    @property
    def _report(self) -> Callable[[Any], None]: ...


class Span(opentracing.Span):
    """A sampled span: records tags and logs and is reported once when finished.

    Spans are created by :meth:`Tracer.start_span
    <falcon_tracing_wsgi.tracer.tracer.Tracer.start_span>`, not directly.

    Attributes:
        operation_name: the span's name.
        start_time: when the span started, in epoch seconds.
        duration: seconds from start to finish; ``None`` until :meth:`finish`.
        tags: the tags set so far.
        logs: ``(timestamp, fields)`` pairs, or ``None`` when nothing was logged.
        references: the references to other spans that are not the parent (see the
            module docstring), or ``None`` (nearly every span).
        dropped_attributes_count: tags not recorded because the span already had
            ``attribute_count`` of them.
        dropped_events_count: log records not kept because the span already had
            ``event_count`` of them.
    """

    __slots__ = ('_tracer', '_context', 'operation_name', 'start_time', 'duration', 'tags',
                 'logs', '_perf_start', 'references', 'dropped_attributes_count',
                 'dropped_events_count')

    # PERF: the base class's ``context`` property runs a Python function; this one's
    # getter is C (read on every request by the middleware, the Falcon component and
    # the encoders).
    context = property(attrgetter('_context'),
                       doc='The span context (see opentracing.Span.context).')

    def __init__(self, tracer: SpanOwner, context: SpanContext, operation_name: str,
                 start_time: Optional[float], tags: Optional[dict[str, Any]]) -> None:
        # PERF: the base initialiser is skipped; it only sets _tracer and _context.
        self._tracer = tracer
        self._context = context
        self.operation_name = operation_name
        if start_time is None:
            self.start_time = _time()
            self._perf_start: Optional[float] = _perf_counter()
        else:
            self.start_time = start_time
            self._perf_start = None
        self.duration: Optional[float] = None
        self.tags: dict[str, Any] = {} if tags is None else tags
        self.logs: Optional[list[tuple[float, dict[str, Any]]]] = None
        self.references: Optional[tuple[opentracing.Reference, ...]] = None
        # PERF: plain slots, not properties: every encoder reads both on every span.
        self.dropped_attributes_count = 0
        self.dropped_events_count = 0

    def set_operation_name(self, operation_name: str) -> Span:
        """Rename the span (a Falcon component renames it to the route template)."""
        limit = self._tracer._value_length
        if type(operation_name) is not str or len(operation_name) > limit:
            operation_name = bounded_value(operation_name, limit)
        self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> Span:
        """Set a tag; the last value set for a key wins.

        Within the tracer's span limits: a value or key longer than ``value_length`` is
        cut, a value without a fixed size becomes text, and a new key beyond
        ``attribute_count`` tags is dropped and counted.
        """
        tracer = self._tracer
        limit = tracer._value_length
        # PERF: the usual str value costs a type test and a length compare; an int a
        # range compare (a Python int has no size limit).
        kind = type(value)
        if kind is str:
            if len(value) > limit:
                value = value[:limit]
        elif kind is int:
            if not _INT_LOW < value < _INT_HIGH:
                value = bounded_value(value, limit)
        elif kind is not bool and kind is not float and value is not None:
            value = bounded_value(value, limit)
        if type(key) is not str or len(key) > limit:
            key = bounded_value(key, limit)
        tags = self.tags
        if len(tags) < tracer._attribute_count or key in tags:
            tags[key] = value
        else:
            self.dropped_attributes_count += 1
        return self

    def set_tags(self, tags: Mapping[str, Any]) -> Span:
        """Set several tags at once, within the span limits (see :meth:`set_tag`).

        Not part of the OpenTracing API: the middleware uses it when a span has it.
        """
        # PERF: set_tag's checks inlined: a method call per tag would cost more than the
        # checks (the Falcon component sets its tags this way on every request).
        own = self.tags
        tracer = self._tracer
        limit = tracer._value_length
        count = tracer._attribute_count
        for key, value in tags.items():
            kind = type(value)
            if kind is str:
                if len(value) > limit:
                    value = value[:limit]
            elif kind is int:
                if not _INT_LOW < value < _INT_HIGH:
                    value = bounded_value(value, limit)
            elif kind is not bool and kind is not float and value is not None:
                value = bounded_value(value, limit)
            if type(key) is not str or len(key) > limit:
                key = bounded_value(key, limit)
            if len(own) < count or key in own:
                own[key] = value
            else:
                self.dropped_attributes_count += 1
        return self

    def log_kv(self, key_values: dict[str, Any], timestamp: Optional[float] = None) -> Span:
        """Add a log record (a bounded copy of ``key_values``) at ``timestamp`` or now.

        Beyond ``event_count`` records the record is dropped and counted; an error record
        takes the place of the newest one instead (see
        :mod:`~falcon_tracing_wsgi.tracer.limits`).
        """
        tracer = self._tracer
        fields = bounded_event(key_values, tracer._event_attribute_count,
                               tracer._value_length)
        record = (_time() if timestamp is None else timestamp, fields)
        logs = self.logs
        if logs is None:
            if tracer._event_count > 0:
                self.logs = [record]
            else:
                self.dropped_events_count += 1
        elif len(logs) < tracer._event_count:
            logs.append(record)
        else:
            self.dropped_events_count += 1
            if is_error_event(fields):
                logs[-1] = record
        return self

    def set_baggage_item(self, key: str, value: Optional[str]) -> Span:
        """Set (or with ``None`` remove) a baggage item for this span's future children.

        An item that W3C baggage could not carry (more than 180 items, more than 4096
        characters of key and value, or 8192 in all) is not set; the span keeps its
        baggage as it was.
        """
        context = _with_baggage_item(self._context, key, value)
        if context is not None:
            self._context = context
        return self

    def get_baggage_item(self, key: str) -> Optional[str]:
        """Return a baggage item, or ``None``."""
        return self._context.baggage.get(key)

    def finish(self, finish_time: Optional[float] = None) -> None:
        """Record the duration and report the span; only the first call has an effect.

        Args:
            finish_time: an explicit end time in epoch seconds (``time.time()``).
        """
        if self.duration is not None:
            return
        if finish_time is None and self._perf_start is not None:
            self.duration = _perf_counter() - self._perf_start
        else:
            end = _time() if finish_time is None else finish_time
            duration = end - self.start_time
            self.duration = duration if duration > 0.0 else 0.0
        try:
            self._tracer._report(self)
        except Exception:
            # The Reporter contract says report() never raises; a third-party one that
            # does must not turn a finished request into an error.
            _log.warning('the reporter failed to take a span', exc_info=True)

    def __exit__(self, exc_type: object, exc_val: Optional[BaseException],
                 exc_tb: object) -> None:
        # PERF: the base __exit__ always calls _on_error; skip it when nothing raised.
        # It tags error=True and logs event/message/error.object/error.kind/stack.
        if exc_val is not None:
            opentracing.Span._on_error(  # type: ignore[attr-defined]
                self, exc_type, exc_val, exc_tb)
        self.finish()

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` has been called."""
        return self.duration is not None

    def __repr__(self) -> str:
        return (f'<Span {self.operation_name!r} trace_id={self._context.trace_id} '
                f'span_id={self._context.span_id} parent_id={self._context.parent_id} '
                f'duration={self.duration!r}>')


class UnsampledSpan(opentracing.Span):
    """A span that is not sampled: it propagates its context and baggage, records nothing.

    ``tags`` is an empty read-only mapping and ``logs`` is ``None`` so generic code that
    inspects a span does not need to know which kind it holds.
    """

    __slots__ = ('_tracer', '_context', 'operation_name')

    # PERF: as Span.context.
    context = property(attrgetter('_context'),
                       doc='The span context (see opentracing.Span.context).')

    tags: Mapping[str, Any] = _NO_TAGS
    logs = None
    references = None

    def __init__(self, tracer: SpanOwner, context: SpanContext, operation_name: str) -> None:
        self._tracer = tracer
        self._context = context
        self.operation_name = operation_name

    def set_operation_name(self, operation_name: str) -> UnsampledSpan:
        """Rename the span (kept only so that the name can be read back)."""
        self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> UnsampledSpan:
        """Do nothing: an unsampled span keeps no tags."""
        return self

    def set_tags(self, tags: Mapping[str, Any]) -> UnsampledSpan:
        """Do nothing: an unsampled span keeps no tags."""
        return self

    def log_kv(self, key_values: dict[str, Any],
               timestamp: Optional[float] = None) -> UnsampledSpan:
        """Do nothing: an unsampled span keeps no logs."""
        return self

    def set_baggage_item(self, key: str, value: Optional[str]) -> UnsampledSpan:
        """Set (or with ``None`` remove) a baggage item; baggage propagates regardless
        of sampling. The W3C limits apply as for :meth:`Span.set_baggage_item`."""
        context = _with_baggage_item(self._context, key, value)
        if context is not None:
            self._context = context
        return self

    def get_baggage_item(self, key: str) -> Optional[str]:
        """Return a baggage item, or ``None``."""
        return self._context.baggage.get(key)

    def finish(self, finish_time: Optional[float] = None) -> None:
        """Do nothing: an unsampled span is never reported."""

    def __exit__(self, exc_type: object, exc_val: Optional[BaseException],
                 exc_tb: object) -> None:
        # Nothing to record on error; finish() is still called in case it was wrapped.
        self.finish()

    def __repr__(self) -> str:
        return (f'<UnsampledSpan {self.operation_name!r} '
                f'trace_id={self._context.trace_id} span_id={self._context.span_id}>')


def _with_baggage_item(context: SpanContext, key: str, value: Optional[str]
                       ) -> Optional[SpanContext]:
    """The context with the item set, or None when W3C baggage could not carry it."""
    if value is not None:
        baggage = context.baggage
        size = len(str(key)) + len(str(value)) + 1
        if (len(baggage) >= MAX_MEMBERS and key not in baggage) or size > MAX_MEMBER_BYTES \
                or size + sum(len(name) + len(item) + 2 for name, item in baggage.items()
                              if name != key) > MAX_BYTES:
            _log.debug('baggage item %.40r not set: over the W3C baggage limits', key)
            return None
    return context.with_baggage_item(key, value)
