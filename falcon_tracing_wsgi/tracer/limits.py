"""Span limits: how much one span may record, so that unsent spans have a memory bound.

A collector that is down keeps finished spans in the reporter's queue. The queue holds at
most ``queue_size`` spans, but a span count alone bounds nothing: an app that logs a
thousand events per request, or sets one 100 kB tag, made each queued span hundreds of
kilobytes. So the spans themselves are bounded, where the data is recorded
(:meth:`Span.set_tag <falcon_tracing_wsgi.tracer.span.Span.set_tag>`, ``set_tags``,
``log_kv``, ``start_span(tags=...)``, the operation name), which bounds a span while it is
still open, not only once it is finished.

The limits are OpenTelemetry's span limits, with the same names and the same defaults,
except one (:class:`SpanLimits`):

* ``attribute_count`` (128): tags per span. A tag with a new key beyond it is dropped
  and counted; changing an existing tag always works.
* ``event_count`` (128): log records (events) per span. A record beyond it is dropped
  and counted, except an error record (``event=error``, ``error.kind`` or
  ``error.object``), which takes the place of the newest record (counting that one as
  dropped), so the reason a span failed is never what gets lost.
* ``event_attribute_count`` (128): fields per log record; the later fields are dropped.
* ``value_length`` (4096 characters; unlimited in OpenTelemetry): tag values, names
  and tag keys longer than this are cut. **One log record's keys and text values
  together** get this many characters, in the order they were logged: the value that
  crosses the budget is cut and the fields after it are dropped. A finite default is
  what makes a bound in bytes possible; 4096 is what the Zipkin encoder has always cut
  values at (``zipkin.encoding.DEFAULT_MAX_VALUE_LENGTH``, and the whole text of an
  annotation), so nothing a collector received before is lost. It holds a long URL
  (gunicorn refuses request lines over 4094 bytes) and the innermost part of a stack.

Values are kept as they are when their size is fixed: ``str`` (cut), ``bool``,
``float``, ``None``, ``int`` within 64 bits, and classes (``error.kind``: a class lives
as long as its module, a span adds only a reference). Anything else becomes text when
it is recorded, with the rules the encoders used to apply when sending: an exception
becomes ``Type: message``, a traceback its innermost :data:`MAX_FRAMES` frames as Python
prints them (the X-Ray encoder parses them), any other object ``str(value)``. A log record's ``error.object`` exception also gives the
record its ``error.kind`` (the class) and ``stack`` when they are missing, which is what
the encoders used to read from the object. Above all this drops the references: a span that held an
exception or a traceback kept every frame of the failed request alive, with its local
variables, for as long as the span waited in the queue.

:func:`max_span_memory`, :func:`max_span_chars` and :func:`max_encoded_size` give the
worst case of one span under given limits (memory, text, Zipkin JSON);
:func:`estimate_size` gives the encoded size of one span in a single pass, cheap enough
to account a queue in bytes.
"""

from __future__ import annotations

import traceback
import types
from typing import Any, NamedTuple, Optional

from ..propagation.baggage import MAX_BYTES, MAX_MEMBERS

__all__ = ['SpanLimits', 'DEFAULT_SPAN_LIMITS', 'MAX_FRAMES', 'max_span_chars',
           'max_span_memory', 'max_encoded_size', 'estimate_size', 'bounded_value',
           'bounded_event', 'is_error_event']

#: Frames kept when a traceback object is recorded (innermost ones).
MAX_FRAMES = 50
#: Tag value types whose size is fixed (``int`` is checked against :data:`_INT_BOUND`).
_FIXED = frozenset((bool, float, type(None)))
#: Integers beyond 64 bits (a Python int has no size limit) are recorded as text.
_INT_BOUND = 1 << 64
_UNPRINTABLE = '<unprintable>'
_ERROR_FIELDS = ('error.kind', 'error.object')

# Sizes used by the memory bound (bytes of CPython 3.9-3.13 objects, 64-bit, rounded up).
_STR = 80                   # a str header, the widest kind (UCS-4: 4 bytes a character)
_CHAR = 4                   # bytes per character, worst case
_DICT = 184                 # an empty dict's first table (8 slots)
_ENTRY = 80                 # one more dict entry, at its worst just after the table grew
_RECORD = 56 + 24 + 8       # a log record's (timestamp, fields) tuple, its float, a list slot
_SPAN = 1024                # the span, its context, ids, times, tag dict and log list
_BAGGAGE = MAX_BYTES * _CHAR + MAX_MEMBERS * (_ENTRY + 2 * _STR) + _DICT

# Sizes used by the bounds (characters of Zipkin v2 JSON around each piece).
_SPAN_OVERHEAD = 600        # ids, timestamps, kind, endpoints, braces
_TAG_OVERHEAD = 6           # "key":"value",
_ANNOTATION_OVERHEAD = 40   # {"timestamp":1700000000000000,"value":""},
_SCALAR_CHARS = 24          # the text of a bool, float or 64-bit int
_ESCAPED = 6                # the longest JSON escape of one character: \uXXXX


class SpanLimits(NamedTuple):
    """How much one span may record; see the module docstring for each limit."""

    attribute_count: int = 128
    event_count: int = 128
    event_attribute_count: int = 128
    value_length: int = 4096


#: The limits when none are configured.
DEFAULT_SPAN_LIMITS = SpanLimits()


def _text(value: Any) -> str:
    """Any value as text; never raises."""
    if isinstance(value, BaseException):
        name = type(value).__qualname__
        try:
            message = str(value)
        except Exception:
            message = _UNPRINTABLE
        return f'{name}: {message}' if message else name
    if isinstance(value, types.TracebackType):
        return _frames_text(value)
    if isinstance(value, type):
        return value.__qualname__
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break the request
        return _UNPRINTABLE


def _frames_text(tb: types.TracebackType) -> str:
    """The innermost frames, formatted as Python prints them (with their source lines).

    NOTE: the source lines come from :mod:`linecache`, as for every traceback the
    middleware records; they are what a reader of the stack looks for first.
    """
    return ''.join(traceback.format_tb(tb, limit=-MAX_FRAMES))


def bounded_value(value: Any, limit: int) -> Any:
    """``value`` as a span may hold it: fixed-size values kept, text cut to ``limit``."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= limit else value[:limit]
    if kind in _FIXED or (kind is int and -_INT_BOUND < value < _INT_BOUND):
        return value
    text = _text(value)
    if isinstance(value, types.TracebackType):
        return text[-limit:]  # the innermost frames are the ones worth keeping
    return text[:limit]


def bounded_event(fields: Any, count: int, limit: int) -> dict[str, Any]:
    """A bounded copy of one log record's fields (see the module docstring).

    Raises:
        AttributeError: ``fields`` is not a mapping (the caller's mistake, as before).
    """
    # PERF: the usual record (a few short str fields) is checked in one pass and copied
    # by one C-level dict(); the general loop below runs only when something is cut.
    if len(fields) <= count:
        used = 0
        for key, value in fields.items():
            if type(key) is not str:
                break
            used += len(key)
            if type(value) is str:
                used += len(value)
            elif type(value) is int:
                if not -_INT_BOUND < value < _INT_BOUND:
                    break
            elif type(value) not in _FIXED and not isinstance(value, type):
                break
        else:
            if used <= limit:
                return dict(fields)
    out: dict[str, Any] = {}
    budget = limit
    error: Optional[BaseException] = None
    for key, value in fields.items():
        if len(out) >= count or budget <= 0:
            break
        if type(key) is not str:
            key = _text(key)
        if len(key) >= budget:
            break
        budget -= len(key)
        kind = type(value)
        if kind is str:
            if len(value) > budget:
                value = value[:budget]
            budget -= len(value)
        elif not (kind in _FIXED or (kind is int and -_INT_BOUND < value < _INT_BOUND)
                  or isinstance(value, type)):
            if key == 'error.object' and isinstance(value, BaseException):
                error = value
            value = bounded_value(value, budget)
            budget -= len(value)
        out[key] = value
    if error is not None:
        # The exception object is not kept, so what an encoder used to read from it
        # (its class, its frames) is recorded the OpenTracing way, when not given.
        if 'error.kind' not in out and len(out) < count:
            out['error.kind'] = type(error)
        if 'stack' not in out and error.__traceback__ is not None and len(out) < count \
                and budget > len('stack'):
            out['stack'] = _frames_text(error.__traceback__)[-(budget - len('stack')):]
    return out


def is_error_event(fields: dict[str, Any]) -> bool:
    """Whether a log record reports an error (OpenTracing's ``event=error`` or fields)."""
    return fields.get('event') == 'error' or any(key in fields for key in _ERROR_FIELDS)


def max_span_chars(limits: SpanLimits = DEFAULT_SPAN_LIMITS) -> int:
    """The most characters of recorded text one span can hold under ``limits``.

    The operation name, ``attribute_count`` tags of a key and a value of
    ``value_length`` characters each, and ``event_count`` log records of
    ``value_length`` characters each (plus ``event_attribute_count`` fixed-size values).
    Baggage is not counted here: it is bounded by the W3C limits (8,192 bytes,
    :mod:`falcon_tracing_wsgi.propagation.baggage`).
    """
    value = limits.value_length
    tags = limits.attribute_count * 2 * value
    events = limits.event_count * (value + limits.event_attribute_count * _SCALAR_CHARS)
    return value + tags + events


def max_span_memory(limits: SpanLimits = DEFAULT_SPAN_LIMITS) -> int:
    """The most bytes of memory one finished span can hold under ``limits`` (CPython).

    Every piece at its largest: each character 4 bytes (text outside the Basic
    Multilingual Plane), every tag a key and a value of ``value_length`` characters,
    every log record ``event_attribute_count`` fields sharing ``value_length``
    characters, and the most baggage W3C allows (a child shares its parent's baggage,
    so this is counted once per span only in the worst case).
    """
    value = limits.value_length
    text = _STR + _CHAR * value
    tags = _DICT + limits.attribute_count * (_ENTRY + 2 * text)
    record = (_RECORD + _DICT + limits.event_attribute_count * (_ENTRY + 2 * _STR)
              + _CHAR * value)
    return _SPAN + text + tags + limits.event_count * record + _BAGGAGE


def max_encoded_size(limits: SpanLimits = DEFAULT_SPAN_LIMITS) -> int:
    """The most bytes one span's Zipkin v2 JSON can take under ``limits``.

    Every character escaped (``\\uXXXX``, 6 bytes: the JSON is pure ASCII), plus the
    fixed structure around each piece. The X-Ray encoder's documents are smaller (at
    most 64,000 bytes each).
    """
    pieces = (1 + limits.attribute_count * _TAG_OVERHEAD
              + limits.event_count * _ANNOTATION_OVERHEAD)
    return _SPAN_OVERHEAD + pieces + _ESCAPED * max_span_chars(limits)


def estimate_size(span: Any) -> int:
    """An estimate of one finished span's encoded size in bytes (one pass, no encoding).

    The characters of its name, tag keys and values and log field keys and values, plus
    the fixed structure; text that needs JSON escapes makes the real size larger (at
    most :data:`_ESCAPED` times the characters), repeated annotations make it smaller.
    Meant for accounting a queue in bytes, where a close estimate is enough.
    """
    size = _SPAN_OVERHEAD + _length(span.operation_name)
    tags = span.tags
    if tags:
        for key, value in tags.items():
            size += _TAG_OVERHEAD + _length(key) + _length(value)
    logs = span.logs
    if logs:
        for _, fields in logs:
            size += _ANNOTATION_OVERHEAD
            for key, value in fields.items():
                size += 2 + _length(key) + _length(value)
    return size


def _length(value: Any) -> int:
    return len(value) if type(value) is str else _SCALAR_CHARS
