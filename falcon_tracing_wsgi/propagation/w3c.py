"""W3C Trace Context (Level 2): the ``traceparent`` and ``tracestate`` headers.

``traceparent: {version}-{trace-id}-{parent-id}-{trace-flags}`` carries the caller's
identity; ``tracestate`` carries vendor entries that we pass on untouched. We follow the
Recommendation and the expectations of its test suite:

* **Versions.** ``00`` must be exactly 55 characters. A higher version is parsed for its
  first four fields when it is at least 55 characters long and the flags are followed by
  the end of the value or a ``-``; what follows is never interpreted. Version ``ff`` is
  invalid. We always inject version ``00`` (the highest we know), which downgrades a
  higher version as the spec requires.
* **Strict lower-case hex.** Upper case, all-zero trace or parent ids, wrong lengths and
  stray characters make the header invalid; an invalid ``traceparent`` means *no
  context* (the tracer starts a new trace), and then ``tracestate`` is not even parsed.
  Leading and trailing spaces or tabs around the value are ignored.
* **Duplicate headers.** ``traceparent`` is not a list, so two of them (joined with
  ``,`` under WSGI) are invalid, as the test suite expects.
* **Flags.** The ``sampled`` bit (``0x01``) and Level 2's ``random`` trace-id bit
  (``0x02``) are read; the other bits are reserved and always written as zero. W3C has
  no "defer": a valid header always yields ``sampled`` ``True`` or ``False``, and an
  absent header yields no context. The random bit goes to
  ``SpanContext.random_trace_id``; the tracer copies it to every child, so an inbound
  ``-03`` leaves as ``-03`` (or ``-02`` when this service does not sample), and it is
  set on the trace ids this package draws at random (see ``tracer/ids.py``).
* **tracestate.** Repeated headers are combined (``,``); empty members and optional
  whitespace are allowed and dropped. Keys follow Level 2's grammar: up to 256
  characters of ``a-z 0-9 _ - * / @``, starting with a letter or a digit (Level 1's
  ``tenant@vendor`` form is a special case of it). A key that appears twice is
  inherited, not fatal: the left-most entry (the most recent one, since vendors add on
  the left) is kept and the later duplicates are discarded, as the spec allows. A
  member that breaks the key or value grammar, or more than 32 members, make the whole
  ``tracestate`` dropped without affecting ``traceparent``. The kept value is stored
  normalised (``k=v,k=v``) in ``SpanContext.tracestate``. We propagate at most
  :data:`MAX_TRACESTATE_LENGTH` (512) characters, the spec's minimum, truncating whole
  entries as it prescribes: entries longer than 128 characters go first, then entries
  from the end.
* **64-bit trace ids** (from B3 or Jaeger) are injected left-padded with zeros to 32 hex
  characters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Optional

from ..tracer.context import SpanContext
from ._common import OWS, HeaderName, HeaderNames, same_name

__all__ = ['TraceContextPropagator', 'MAX_TRACESTATE_LENGTH']

_log = logging.getLogger(__name__)

_TRACEPARENT = 'traceparent'
_TRACESTATE = 'tracestate'

#: ``00-{32}-{16}-{2}``
_V00_LENGTH = 55
#: Higher versions may append fields; longer values are "prohibitively large".
_MAX_TRACEPARENT = 512
_TRACEPARENT_RE = re.compile(r'([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})')
_ZERO_TRACE_ID = '0' * 32
_ZERO_SPAN_ID = '0' * 16
_PAD_64 = '0' * 16
_SAMPLED_FLAG = 0x01
_RANDOM_FLAG = 0x02
#: trace-flags written for (sampled | random << 1): the other bits are reserved (zero).
_FLAGS = ('00', '01', '02', '03')

#: The longest ``tracestate`` we propagate (the spec asks for at least 512 characters).
MAX_TRACESTATE_LENGTH = 512
#: Entries longer than this are the first to go when truncating.
_LONG_ENTRY = 128
_MAX_MEMBERS = 32
#: 32 members of 513 characters and their commas, plus room for whitespace and empty
#: members; anything longer cannot be a useful tracestate and is dropped unread.
_MAX_TRACESTATE_INPUT = _MAX_MEMBERS * 514 + 1024
#: Comma-separated parts, empty ones included, we are willing to look at.
_MAX_PARTS = 4 * _MAX_MEMBERS
#: Level 2: ``key = ( lcalpha / DIGIT ) 0*255 ( keychar )``, keychar adds ``_ - * / @``.
_KEY = r'[a-z0-9][a-z0-9_\-*/@]{0,255}'
_VALUE = r'[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]'
_MEMBER_RE = re.compile(f'({_KEY})={_VALUE}')


def _parse_traceparent(raw: str) -> Optional[tuple[str, str, int]]:
    """Return ``(trace_id, span_id, trace_flags)`` or ``None`` when invalid."""
    if len(raw) > _MAX_TRACEPARENT:
        return None
    value = raw.strip(OWS)
    if len(value) < _V00_LENGTH or ',' in value:
        return None
    match = _TRACEPARENT_RE.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == '00':
        if len(value) != _V00_LENGTH:
            return None
    elif version == 'ff':
        return None
    elif len(value) > _V00_LENGTH and value[_V00_LENGTH] != '-':
        return None
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return trace_id, span_id, int(flags, 16)


def _parse_tracestate(raw: str) -> Optional[str]:
    """Validate a (combined) ``tracestate`` and return it normalised, or ``None``."""
    if len(raw) > _MAX_TRACESTATE_INPUT:
        return None
    parts = raw.split(',', _MAX_PARTS)
    if len(parts) > _MAX_PARTS:
        return None
    members: list[str] = []
    keys: set[str] = set()
    for part in parts:
        member = part.strip(OWS)
        if not member:
            continue
        match = _MEMBER_RE.fullmatch(member)
        if match is None:
            return None
        key = match.group(1)
        if key in keys:
            # Inherited duplicates: keep the left-most (most recent) entry.
            continue
        if len(members) == _MAX_MEMBERS:
            return None
        keys.add(key)
        members.append(member)
    if not members:
        return None
    length = sum(map(len, members)) + len(members) - 1
    while length > MAX_TRACESTATE_LENGTH:
        index = len(members) - 1
        for i in range(index, -1, -1):
            if len(members[i]) > _LONG_ENTRY:
                index = i
                break
        length -= len(members.pop(index)) + 1
    if not members:
        return None
    return ','.join(members)


class TraceContextPropagator(HeaderNames):
    """W3C Trace Context: ``traceparent`` and ``tracestate`` (see the module docstring).

    Args:
        header_name: writes each header under ``header_name(name)``; ``None`` keeps
            the canonical names (see :meth:`with_header_names`).
    """

    __slots__ = ('_traceparent_header', '_tracestate_header')

    #: extract() returns only contexts whose ids are valid (see tracer/context.py).
    checks_ids = True
    #: The headers this format reads, lower case.
    fields: tuple[str, ...] = (_TRACEPARENT, _TRACESTATE)
    #: extract() reads no other header (a tracer may skip it when none is present).
    reads_only_fields = True

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        name = header_name or same_name
        self._traceparent_header = name('traceparent')
        self._tracestate_header = name('tracestate')

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        """Read the caller's context.

        Args:
            carrier: a header view answering lower-case names.

        Returns:
            A context with the caller's ids, its ``sampled`` flag and the normalised
            ``tracestate`` (or ``None`` when absent or invalid); ``None`` when
            ``traceparent`` is absent or invalid. Never raises on bad header values.
        """
        try:
            raw = carrier.get(_TRACEPARENT)
            if raw is None:
                return None
            parsed = _parse_traceparent(raw)
            if parsed is None:
                _log.debug('ignoring invalid traceparent %.80r', raw)
                return None
            trace_id, span_id, flags = parsed
            tracestate = carrier.get(_TRACESTATE)
            if tracestate is not None:
                tracestate = _parse_tracestate(tracestate)
            return SpanContext(trace_id, span_id, None, bool(flags & _SAMPLED_FLAG), False,
                               None, tracestate, None, bool(flags & _RANDOM_FLAG))
        except (TypeError, AttributeError):
            # A carrier that breaks the contract (a non-str value): tracing must not
            # fail the request. PERF: a try block costs nothing on 3.11 when not raised.
            _log.debug('W3C extract: carrier returned a non-string value', exc_info=True)
            return None

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write ``traceparent`` (version 00) and, when there is one, ``tracestate``.

        A context without ids (a bare sampling decision or baggage) writes nothing: W3C
        cannot express it. Debug maps to the sampled flag, a deferred decision to an unset
        one; ``random_trace_id`` sets the random flag (``0x02``).
        """
        trace_id = context.trace_id
        if trace_id is None or context.span_id is None:
            return
        if len(trace_id) == 16:
            trace_id = _PAD_64 + trace_id
        flags = _FLAGS[(1 if context.sampled or context.debug else 0)
                       | (2 if context.random_trace_id else 0)]
        carrier[self._traceparent_header] = f'00-{trace_id}-{context.span_id}-{flags}'
        if context.tracestate:
            carrier[self._tracestate_header] = context.tracestate
