"""Jaeger propagation: ``uber-trace-id`` and ``uberctx-*`` baggage headers.

``uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}`` names the caller's span;
each baggage item travels as its own ``uberctx-{key}`` header with a URL-encoded value.
Rule ids refer to the Jaeger checklist kept with the project's specs.

Decisions:

* **Widths.** Senders drop leading zeros, so we accept 1 to 32 hex digits for the trace
  id and 1 to 16 for the span and parent ids (J-T1, J-S1), in either case (J-X1), and
  re-pad on extract: trace ids to 16 characters, or 32 when longer than 16; span and
  parent ids to 16 (J-Z1). A ``SpanContext`` therefore always holds exact-width
  lower-case ids, and a 64-bit trace stays 64-bit. We inject the padded ids, which Go
  and Java clients also do and every receiver accepts (J-E2).
* **Invalid values** (not four fields, non-hex, zero trace or span id, J-V1; several
  comma-joined values, J-V3) give no trace context. A parent of ``0`` means root
  (J-P1). The URL-encoded form (``%3A`` for ``:``) is accepted, as jaeger-client does
  (J-X2).
* **Flags.** ``0x01`` is sampled (J-F2). Debug is ``0x02`` *together with* sampled
  (J-F3), because in this library debug implies sampled; other bits are ignored (J-F4).
  Jaeger has no "defer": ``sampled`` is always ``True`` or ``False``. We inject ``03``
  for debug, ``01`` sampled, ``00`` otherwise, always two digits (J-F1), and never set
  debug just because a span is sampled (J-E4).
* **Baggage.** Every carrier name starting with ``uberctx-`` (any case) is an item; the
  key is the rest of the name, lower-cased, with ``_`` mapped to ``-`` so that a plain
  dict and a WSGI environ (which cannot tell them apart) give the same key (J-B3, J-B4).
  Values are URL-decoded (J-B2). Items are bounded like W3C Baggage (J-B7): at most 180,
  4096 bytes each, 8192 in all. Baggage survives an invalid ``uber-trace-id`` (J-V2). On
  inject, values are encoded with ``urllib.parse.quote`` as jaeger-client does, and
  items whose key is not a valid header name are skipped.
* **jaeger-debug-id** (J-B6) is honoured only when there is no valid
  ``uber-trace-id``: it yields a context without ids, sampled and debug, with the value
  in ``extra['jaeger-debug-id']`` so the tracer can tag the new root span. The
  ad-hoc ``jaeger-baggage`` header (J-B5) is not supported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Optional
from urllib.parse import unquote

from ..tracer.context import SpanContext
from ._common import OWS, HeaderName, HeaderNames, is_token, quote_jaeger_value, same_name
from .baggage import MAX_BYTES, MAX_MEMBER_BYTES, MAX_MEMBERS

__all__ = ['JaegerPropagator', 'DEBUG_ID_KEY']

_log = logging.getLogger(__name__)

_TRACE_HEADER = 'uber-trace-id'
_DEBUG_HEADER = 'jaeger-debug-id'
_BAGGAGE_PREFIX = 'uberctx-'
_PREFIX_LENGTH = len(_BAGGAGE_PREFIX)
_U = ('u', 'U')

#: ``SpanContext.extra`` key holding a ``jaeger-debug-id`` value.
DEBUG_ID_KEY = 'jaeger-debug-id'
_MAX_DEBUG_ID = 256

#: ``{32}:{16}:{16}:{2}`` with every ``:`` URL-encoded as ``%3A``, plus some whitespace.
_MAX_TRACE_HEADER = 32 + 16 + 16 + 2 + 3 * 3 + 8
_TRACE_RE = re.compile(r'([0-9a-f]{1,32}):([0-9a-f]{1,16}):([0-9a-f]{1,16}):([0-9a-f]{1,2})')
_TRACE_ANY_CASE_RE = re.compile(
    r'[0-9a-fA-F]{1,32}:[0-9a-fA-F]{1,16}:[0-9a-fA-F]{1,16}:[0-9a-fA-F]{1,2}')
# Printable ASCII without spaces: what a debug id can sensibly be when used as a tag.
_DEBUG_ID_RE = re.compile(r'[\x21-\x7e]+')


def _parse_trace(raw: str) -> Optional[SpanContext]:
    """Parse an ``uber-trace-id`` value; ``None`` when it is invalid."""
    # PERF: a well-formed lower-case value matches at once; the pattern is bounded, so a
    # huge value fails after at most 70 characters.
    match = _TRACE_RE.fullmatch(raw)
    if match is None:
        # Slow path: whitespace, URL-encoding or upper case.
        if len(raw) > _MAX_TRACE_HEADER:
            return None
        value = raw.strip(OWS)
        if '%' in value:
            value = unquote(value)
        match = _TRACE_RE.fullmatch(value)
        if match is None:
            if _TRACE_ANY_CASE_RE.fullmatch(value) is None:
                return None
            match = _TRACE_RE.fullmatch(value.lower())
            if match is None:  # pragma: no cover - the patterns differ only in case
                return None
    trace_id, span_id, parent_id, flags = match.groups()
    # J-T2, J-S1: zero trace and span ids are invalid; a zero parent means root (J-P1).
    if not trace_id.strip('0') or not span_id.strip('0'):
        return None
    # J-Z1: re-pad. PERF: zfill returns the string itself when it is already wide enough.
    trace_id = trace_id.zfill(16) if len(trace_id) <= 16 else trace_id.zfill(32)
    parent = parent_id.zfill(16) if parent_id.strip('0') else None
    bits = int(flags, 16)
    return SpanContext(trace_id, span_id.zfill(16), parent, bool(bits & 1), bits & 3 == 3)


def _extract_baggage(carrier: Mapping[str, str]) -> Optional[dict[str, str]]:
    """Collect ``uberctx-*`` items, bounded; ``None`` when there are none."""
    try:
        return _scan_baggage(carrier)
    except (TypeError, AttributeError):
        # A carrier that yields non-string names: keep the trace context, drop baggage.
        _log.debug('Jaeger extract: carrier has non-string header names', exc_info=True)
        return None


def _scan_baggage(carrier: Mapping[str, str]) -> Optional[dict[str, str]]:
    # PERF: most requests carry no Jaeger baggage; one join, lower and substring search
    # say so in about half the time of testing each name in a Python loop.
    if _BAGGAGE_PREFIX not in '\n'.join(carrier).lower():
        return None
    baggage: Optional[dict[str, str]] = None
    total = 0
    for name in carrier:
        # One-character slices are cached strings: this filter allocates nothing.
        if name[:1] not in _U or len(name) <= _PREFIX_LENGTH:
            continue
        lower = name.lower()
        if not lower.startswith(_BAGGAGE_PREFIX):
            continue
        # The contract says get() takes the lower-case name; the name as iterated also
        # works for a carrier that keeps case (a plain dict that was not lower-cased).
        value = carrier.get(lower)
        if value is None:
            value = carrier.get(name)
        if value is None or len(lower) + len(value) > MAX_MEMBER_BYTES:
            continue
        total += len(lower) - _PREFIX_LENGTH + len(value)
        if total > MAX_BYTES:
            break
        key = lower[_PREFIX_LENGTH:].replace('_', '-')
        if '%' in value:
            value = unquote(value, errors='replace')
        if baggage is None:
            baggage = {key: value}
        elif key not in baggage:
            baggage[key] = value
            if len(baggage) == MAX_MEMBERS:
                break
    return baggage


class JaegerPropagator(HeaderNames):
    """Jaeger's ``uber-trace-id`` and ``uberctx-*`` headers (see the module docstring).

    Args:
        header_name: writes each header under ``header_name(name)``: ``uber-trace-id``
            is resolved once, each ``uberctx-{key}`` as it is written; ``None`` keeps
            the canonical names (see :meth:`with_header_names`).
    """

    __slots__ = ('_trace_header', '_baggage_name')

    #: extract() returns only contexts whose ids are valid (see tracer/context.py).
    checks_ids = True
    #: The fixed headers this format reads, lower case; baggage is every ``uberctx-*``.
    fields: tuple[str, ...] = (_TRACE_HEADER, _DEBUG_HEADER)

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        self._trace_header = (header_name or same_name)('uber-trace-id')
        # PERF: None (not same_name) by default, so canonical names cost no call per item.
        self._baggage_name = header_name

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        """Read the caller's context and baggage.

        Args:
            carrier: a header view answering lower-case names and iterating its names.

        Returns:
            The caller's context with its baggage; a context without ids that carries
            only baggage and/or a debug id when ``uber-trace-id`` is absent or invalid;
            ``None`` when there is nothing. Never raises on bad header values.
        """
        try:
            raw = carrier.get(_TRACE_HEADER)
            context = None
            if raw is not None:
                context = _parse_trace(raw)
                if context is None:
                    _log.debug('ignoring invalid uber-trace-id %.80r', raw)
            baggage = _extract_baggage(carrier)
            if context is not None:
                if baggage is not None:
                    context = SpanContext(context.trace_id, context.span_id, context.parent_id,
                                          context.sampled, context.debug, baggage)
                return context
            debug_id = carrier.get(_DEBUG_HEADER)
            if debug_id is not None and len(debug_id) <= _MAX_DEBUG_ID:
                debug_id = debug_id.strip(OWS)
                if _DEBUG_ID_RE.fullmatch(debug_id):
                    return SpanContext(None, None, None, True, True, baggage, None,
                                       {DEBUG_ID_KEY: debug_id})
            if baggage is not None:
                return SpanContext(None, None, None, None, False, baggage)
            return None
        except (TypeError, AttributeError):
            # A carrier that breaks the contract (a non-str name or value): tracing must
            # not fail the request. PERF: a try block costs nothing on 3.11 when not raised.
            _log.debug('Jaeger extract: carrier returned a non-string value', exc_info=True)
            return None

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write ``uber-trace-id`` (J-E1) and one ``uberctx-{key}`` per baggage item (J-E3)."""
        if context.trace_id is not None and context.span_id is not None:
            if context.debug:
                flags = '03'
            else:
                flags = '01' if context.sampled else '00'
            parent = context.parent_id or '0'
            carrier[self._trace_header] = f'{context.trace_id}:{context.span_id}:{parent}:{flags}'
        baggage_name = self._baggage_name
        for key, value in context.baggage.items():
            if is_token(key):
                header = _BAGGAGE_PREFIX + key
                if baggage_name is not None:
                    header = baggage_name(header)
                carrier[header] = quote_jaeger_value(str(value))
            else:
                _log.debug('not propagating baggage item with invalid key %.80r', key)
