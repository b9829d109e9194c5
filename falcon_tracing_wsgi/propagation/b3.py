"""Zipkin B3 propagation: the multi-header and the single ``b3`` header encodings.

Both propagators *extract* both encodings, so a service configured for one still joins
a caller that sends the other; they differ only in what they *inject*:
:class:`B3MultiPropagator` writes ``X-B3-TraceId``, ``X-B3-SpanId``,
``X-B3-ParentSpanId`` and ``X-B3-Sampled`` or ``X-B3-Flags``; :class:`B3SinglePropagator`
writes ``b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]``.

Decisions (rule ids refer to the B3 checklist kept with the project's specs):

* **Precedence.** The ``b3`` header wins over the multi headers (B3-5). When ``b3`` is
  present but invalid we fall back to the multi headers, as Brave does (B3-6): a caller
  that sends both and gets one wrong still keeps its trace.
* **Repeated headers.** Under WSGI they arrive joined with ``,``; the first value wins
  (B3-H5).
* **Ids.** Trace ids are 16 or 32 hex characters and keep their width (B3-I8); span and
  parent ids are 16. All-zero ids are invalid (B3-I6). Other lengths, an empty or
  nonsense parent (B3-I3, B3-V1) and a span id missing next to a trace id (B3-V4) make
  the *whole* context invalid (B3-V2): we return ``None`` and the tracer starts a new
  trace rather than continuing a half-parsed one.
* **Upper-case hex** is accepted on input and normalised to lower case. The spec only
  requires emitting lower case (B3-I7); an upper-case id names the same number, and
  rejecting it would silently split the caller's trace (OpenTelemetry accepts it too;
  Brave rejects it). We never emit upper case.
* **Sampling.** ``X-B3-Sampled`` accepts ``1``/``0`` and the legacy ``true``/``false``
  in any case (B3-S6); anything else invalidates the context (B3-S10). ``X-B3-Flags: 1``
  or ``d`` in ``b3`` is debug, which implies sampled (B3-S4); other flag values are
  ignored (B3-S5). No sampling state is *defer*: ``sampled`` is ``None`` (B3-S1, B3-S9).
* **Sampling-only contexts** (``b3: 0``, ``b3: 1``, ``b3: d``, ``X-B3-Sampled: 0``
  alone, B3-S8/B3-V3) extract as a context with ``trace_id`` and ``span_id`` ``None``
  and the decision; injecting such a context writes only the decision, which is how the
  reporter sends ``b3: 0`` with its own uploads (B3-E6).
* **Injecting a deferred context with a parent** as ``b3`` writes ``T-S`` without the
  parent: the single-header grammar only allows a parent after a sampling state (B3-1).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Optional

from ..tracer.context import SpanContext
from ._common import HeaderName, HeaderNames, first_value, same_name

__all__ = ['B3MultiPropagator', 'B3SinglePropagator']

_log = logging.getLogger(__name__)

_B3 = 'b3'
_TRACE_ID = 'x-b3-traceid'
_SPAN_ID = 'x-b3-spanid'
_PARENT_ID = 'x-b3-parentspanid'
_SAMPLED = 'x-b3-sampled'
_FLAGS = 'x-b3-flags'

#: The longest legal ``b3`` value: ``{32}-{16}-x-{16}`` (B3-4).
_MAX_SINGLE = 32 + 1 + 16 + 1 + 1 + 1 + 16

# B3-1/B3-3: T-S, T-S-x, T-S-x-P and the tolerated T-S-P. The lower-case pattern is the
# fast path; the any-case one only decides whether lower-casing the value can help.
_SINGLE_RE = re.compile(
    r'([0-9a-f]{32}|[0-9a-f]{16})-([0-9a-f]{16})(?:-([01d]))?(?:-([0-9a-f]{16}))?')
_SINGLE_ANY_CASE_RE = re.compile(
    r'(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{16})-[0-9a-fA-F]{16}(?:-[01d])?(?:-[0-9a-fA-F]{16})?')
_ID16_RE = re.compile(r'[0-9a-f]{16}')
_ID16_ANY_CASE_RE = re.compile(r'[0-9a-fA-F]{16}')
_ID16_32_RE = re.compile(r'[0-9a-f]{16}(?:[0-9a-f]{16})?')
_ID16_32_ANY_CASE_RE = re.compile(r'[0-9a-fA-F]{16}(?:[0-9a-fA-F]{16})?')

# ``sampled``/``debug`` for a lone ``b3`` sampling state.
_SINGLE_STATES = {'0': (False, False), '1': (True, False), 'd': (True, True)}
# X-B3-Sampled values (B3-S6); looked up as sent, then lower-cased.
_SAMPLED_VALUES = {'1': True, '0': False, 'true': True, 'false': False}


def _extract_single(raw: str) -> Optional[SpanContext]:
    """Parse a ``b3`` header value; ``None`` when it is invalid."""
    # PERF: a well-formed value matches at once; the pattern is bounded, so a huge value
    # fails after at most 69 characters.
    match = _SINGLE_RE.fullmatch(raw)
    if match is None:
        # Slow path: a lone sampling state, repeated headers, whitespace or upper case.
        value = first_value(raw, _MAX_SINGLE)
        if value is None:
            return None
        if len(value) == 1:
            decision = _SINGLE_STATES.get(value)
            if decision is None:
                return None
            return SpanContext(None, None, None, decision[0], decision[1])
        match = _SINGLE_RE.fullmatch(value)
        if match is None:
            if _SINGLE_ANY_CASE_RE.fullmatch(value) is None:
                return None
            match = _SINGLE_RE.fullmatch(value.lower())
            if match is None:  # pragma: no cover - the patterns differ only in case
                return None
    trace_id, span_id, state, parent_id = match.groups()
    # B3-I6: all-zero ids are invalid.
    if not trace_id.strip('0') or not span_id.strip('0'):
        return None
    if parent_id is not None and not parent_id.strip('0'):
        return None
    if state is None:
        return SpanContext(trace_id, span_id, parent_id)
    sampled, debug = _SINGLE_STATES[state]
    return SpanContext(trace_id, span_id, parent_id, sampled, debug)


def _id(raw: str, pattern: re.Pattern[str], any_case: re.Pattern[str]) -> Optional[str]:
    """Validate one ``X-B3-*Id`` header value; ``None`` when it is invalid."""
    if pattern.fullmatch(raw) is None:
        # Slow path: repeated headers, whitespace or upper case.
        value = first_value(raw, 32)
        if value is None:
            return None
        if pattern.fullmatch(value) is None:
            if any_case.fullmatch(value) is None:
                return None
            value = value.lower()
        raw = value
    return raw if raw.strip('0') else None


def _extract_multi(carrier: Mapping[str, str]) -> Optional[SpanContext]:
    """Parse the ``X-B3-*`` headers; ``None`` when absent or invalid."""
    trace_raw = carrier.get(_TRACE_ID)
    sampled_raw = carrier.get(_SAMPLED)
    flags_raw = carrier.get(_FLAGS)
    if trace_raw is None and sampled_raw is None and flags_raw is None:
        return None

    sampled: Optional[bool] = None
    if sampled_raw is not None:
        # The length test keeps a huge value from being hashed for the lookup.
        sampled = _SAMPLED_VALUES.get(sampled_raw) if len(sampled_raw) <= 5 else None
        if sampled is None:
            value = first_value(sampled_raw, 5)
            if value is None:
                return None
            sampled = _SAMPLED_VALUES.get(value.lower())
            if sampled is None:
                return None  # B3-S10: a bad decision discards the whole context.
    debug = flags_raw is not None and (flags_raw == '1' or first_value(flags_raw, 1) == '1')
    if debug:
        sampled = True

    if trace_raw is None:
        # B3-V3: a decision without ids; stray span/parent ids are meaningless alone.
        if sampled is None:
            return None
        return SpanContext(None, None, None, sampled, debug)

    trace_id = _id(trace_raw, _ID16_32_RE, _ID16_32_ANY_CASE_RE)
    span_raw = carrier.get(_SPAN_ID)
    if trace_id is None or span_raw is None:
        return None
    span_id = _id(span_raw, _ID16_RE, _ID16_ANY_CASE_RE)
    if span_id is None:
        return None
    parent_raw = carrier.get(_PARENT_ID)
    parent_id = None
    if parent_raw is not None:
        parent_id = _id(parent_raw, _ID16_RE, _ID16_ANY_CASE_RE)
        if parent_id is None:
            return None
    return SpanContext(trace_id, span_id, parent_id, sampled, debug)


class _B3Propagator(HeaderNames):
    """Extraction shared by both B3 encodings (they differ only in what they inject)."""

    __slots__ = ()

    #: extract() returns only contexts whose ids are valid (see tracer/context.py).
    checks_ids = True
    #: Every header B3 may read, lower case.
    fields: tuple[str, ...] = (_B3, _TRACE_ID, _SPAN_ID, _PARENT_ID, _SAMPLED, _FLAGS)
    #: extract() reads no other header (a tracer may skip it when none is present).
    reads_only_fields = True

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        """Read a B3 context from either encoding, ``b3`` first.

        Args:
            carrier: a header view answering lower-case names.

        Returns:
            The caller's context, a sampling-only context, or ``None`` when B3 is absent
            or invalid. Never raises on bad header values.
        """
        try:
            single = carrier.get(_B3)
            if single is not None:
                context = _extract_single(single)
                if context is not None:
                    return context
                _log.debug('ignoring invalid b3 header %.80r', single)
            return _extract_multi(carrier)
        except (TypeError, AttributeError):
            # A carrier that breaks the contract (a non-str value): tracing must not
            # fail the request. PERF: a try block costs nothing on 3.11 when not raised.
            _log.debug('B3 extract: carrier returned a non-string value', exc_info=True)
            return None


class B3MultiPropagator(_B3Propagator):
    """B3 as separate ``X-B3-*`` headers (the classic Zipkin encoding).

    Extracts both encodings (see the module docstring); injects the multi headers.

    Args:
        header_name: writes each header under ``header_name(name)``; ``None`` keeps
            the canonical names (see :meth:`with_header_names`).
    """

    __slots__ = ('_trace_id_header', '_span_id_header', '_parent_id_header',
                 '_flags_header', '_sampled_header')

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        name = header_name or same_name
        self._trace_id_header = name('X-B3-TraceId')
        self._span_id_header = name('X-B3-SpanId')
        self._parent_id_header = name('X-B3-ParentSpanId')
        self._flags_header = name('X-B3-Flags')
        self._sampled_header = name('X-B3-Sampled')

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write ``X-B3-*`` headers for ``context`` (B3-E1).

        The ids are written when the context has them; then exactly one of
        ``X-B3-Flags: 1`` (debug), ``X-B3-Sampled: 1|0``, or nothing (defer).
        """
        if context.trace_id is not None and context.span_id is not None:
            carrier[self._trace_id_header] = context.trace_id
            carrier[self._span_id_header] = context.span_id
            if context.parent_id is not None:
                carrier[self._parent_id_header] = context.parent_id
        if context.debug:
            carrier[self._flags_header] = '1'
        elif context.sampled is not None:
            carrier[self._sampled_header] = '1' if context.sampled else '0'


class B3SinglePropagator(_B3Propagator):
    """B3 as the single ``b3`` header.

    Extracts both encodings (see the module docstring); injects ``b3``.

    Args:
        header_name: writes ``b3`` under ``header_name('b3')``; ``None`` keeps ``b3``
            (see :meth:`with_header_names`).
    """

    __slots__ = ('_header',)

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        self._header = (header_name or same_name)('b3')

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write ``b3: T-S[-x][-P]``, or a lone sampling state for an id-less context (B3-E2)."""
        if context.debug:
            state: Optional[str] = 'd'
        elif context.sampled is None:
            state = None
        else:
            state = '1' if context.sampled else '0'
        if context.trace_id is not None and context.span_id is not None:
            if state is None:
                carrier[self._header] = f'{context.trace_id}-{context.span_id}'
            elif context.parent_id is None:
                carrier[self._header] = f'{context.trace_id}-{context.span_id}-{state}'
            else:
                carrier[self._header] = (f'{context.trace_id}-{context.span_id}-{state}-'
                                         f'{context.parent_id}')
        elif state is not None:
            carrier[self._header] = state
