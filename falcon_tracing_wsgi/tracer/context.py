"""The span context: what one span hands to its children and to the next service.

Design (decided once, relied on by every propagation codec, the tracer and the reporters):

* Ids are kept as **lower-case hex strings of their wire width**, not integers.
  ``trace_id`` is 16 or 32 characters (64 or 128 bits), ``span_id`` and ``parent_id`` are
  16. Every format we speak (B3, W3C, Jaeger, Zipkin v2 JSON) carries ids as hex, so
  keeping hex means an incoming id is validated once and then copied, never parsed into
  an ``int`` and formatted back on every hop. It also keeps an incoming 64-bit trace id
  64 bits wide on the way out (B3-I8).
* ``sampled`` is ``True``, ``False`` or ``None``. ``None`` only appears on a context
  that was *extracted* without a decision (B3 "defer"); every span the tracer starts has
  a definite decision.
* ``trace_id`` and ``span_id`` may both be ``None``: an extracted context that carries
  only a sampling decision (``b3: 0``) or only baggage. Starting a span from such a
  context begins a new trace that keeps the decision and the baggage.
* Baggage is a plain ``dict`` that is never mutated after construction; adding an item
  makes a new context (copy-on-write), as OpenTracing requires.
* ``tracestate`` carries the W3C ``tracestate`` header (or ``None``) so a service passes
  on what it does not understand. ``extra`` is a small dict for other formats' opaque
  pass-through fields (for example the X-Ray header's unknown keys); ``None`` when empty.
* ``random_trace_id`` is W3C Trace Context Level 2's *random* trace-flag (``0x02``): at
  least the right-most 7 bytes of ``trace_id`` were drawn uniformly at random. It belongs
  to the trace id, not to one span: every child copies it, and it is true only when this
  package drew the id at random or a W3C caller said so. Formats that cannot carry it
  (B3, Jaeger, X-Ray, the binary encoding) extract ``False``: unknown means unset, as
  the spec requires for ids whose randomness is not known.
* **Who guarantees the ids.** The built-in propagation codecs (``checks_ids = True``)
  and id generators only ever make valid ids. The tracer checks, with
  :func:`valid_ids`, what comes from anywhere else (an id generator or a propagator it
  was given) before a context is made of it, so every context the tracer makes from
  its generator or its ``extract()`` has valid ids. The WSGI wrapper's server span is
  always made that way, so its Zipkin encoding trusts them (``export/zipkin.py``);
  other spans may have a hand-made parent and are checked when encoded.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import opentracing

__all__ = ['SpanContext', 'valid_ids', 'valid_span_id', 'valid_trace_id']

_EMPTY: dict[str, str] = {}
_SPAN_ID = re.compile(r'[0-9a-f]{16}')
_TRACE_ID = re.compile(r'[0-9a-f]{16}(?:[0-9a-f]{16})?')


def valid_trace_id(value: Any) -> bool:
    """Whether ``value`` is a trace id: 16 or 32 lower-case hex characters."""
    return type(value) is str and _TRACE_ID.fullmatch(value) is not None


def valid_span_id(value: Any) -> bool:
    """Whether ``value`` is a span id: 16 lower-case hex characters."""
    return type(value) is str and _SPAN_ID.fullmatch(value) is not None


def valid_ids(context: SpanContext) -> bool:
    """Whether a context names a span with valid ids (and a valid parent id, if any),
    a trace to join with a valid trace id and no span, or neither (ids both ``None``:
    a decision or baggage only)."""
    if context.span_id is None:
        return context.parent_id is None and (context.trace_id is None
                                              or valid_trace_id(context.trace_id))
    return (valid_trace_id(context.trace_id) and valid_span_id(context.span_id)
            and (context.parent_id is None or valid_span_id(context.parent_id)))


class SpanContext(opentracing.SpanContext):
    """Immutable identity and propagated state of one span.

    Args:
        trace_id: 16 or 32 lower-case hex characters, or ``None`` for a context that
            carries only a sampling decision or baggage.
        span_id: 16 lower-case hex characters, or ``None``: with a ``trace_id``, a trace
            to join without a caller's span (X-Ray's ``Root`` without ``Parent``, sent
            by load balancers: a span started from it is a root span of that trace);
            without one, as above.
        parent_id: the parent span's 16-hex id, or ``None`` for a root span.
        sampled: the sampling decision; ``None`` means "not decided yet" (defer).
        debug: a debug trace is always sampled and reported with ``debug: true``.
        baggage: baggage items; the dict is owned by the context and never changed.
        tracestate: the W3C ``tracestate`` value to pass on, if any.
        extra: opaque pass-through fields of other formats, if any.
        random_trace_id: the W3C *random* trace-flag: the right-most 7 bytes of
            ``trace_id`` are random (see the module docstring).
    """

    __slots__ = ('trace_id', 'span_id', 'parent_id', 'sampled', 'debug', '_baggage',
                 'tracestate', 'extra', 'random_trace_id')

    def __init__(
        self,
        trace_id: Optional[str],
        span_id: Optional[str],
        parent_id: Optional[str] = None,
        sampled: Optional[bool] = None,
        debug: bool = False,
        baggage: Optional[dict[str, str]] = None,
        tracestate: Optional[str] = None,
        extra: Optional[dict[str, str]] = None,
        random_trace_id: bool = False,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.debug = debug
        self._baggage = baggage or _EMPTY
        self.tracestate = tracestate
        self.extra = extra
        self.random_trace_id = random_trace_id

    @property
    def baggage(self) -> dict[str, str]:
        """The baggage items. Callers must not modify the returned dict."""
        return self._baggage

    @property
    def has_ids(self) -> bool:
        """Whether this context names a span (rather than only a decision or baggage)."""
        return self.trace_id is not None and self.span_id is not None

    def with_baggage_item(self, key: str, value: Optional[str]) -> SpanContext:
        """Return a copy with one baggage item set (or removed when ``value`` is None)."""
        baggage = dict(self._baggage)
        if value is None:
            baggage.pop(key, None)
        else:
            baggage[key] = value
        return SpanContext(self.trace_id, self.span_id, self.parent_id, self.sampled,
                           self.debug, baggage, self.tracestate, self.extra,
                           self.random_trace_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanContext):
            return NotImplemented
        return (self.trace_id == other.trace_id and self.span_id == other.span_id
                and self.parent_id == other.parent_id and self.sampled == other.sampled
                and self.debug == other.debug and self._baggage == other._baggage
                and self.tracestate == other.tracestate and self.extra == other.extra
                and self.random_trace_id == other.random_trace_id)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value object

    def __repr__(self) -> str:
        return (f'SpanContext(trace_id={self.trace_id!r}, span_id={self.span_id!r}, '
                f'parent_id={self.parent_id!r}, sampled={self.sampled!r}, '
                f'debug={self.debug!r}, baggage={self._baggage!r}, '
                f'tracestate={self.tracestate!r}, extra={self.extra!r}, '
                f'random_trace_id={self.random_trace_id!r})')
