"""W3C Baggage: application key/value pairs in the ``baggage`` header.

``baggage: key1=value1;property1, key2 = value%202`` carries OpenTracing baggage items
between services independently of any trace format. This propagator only deals with
baggage: :meth:`W3CBaggagePropagator.extract` returns a context whose ids are ``None``,
which :class:`~falcon_tracing_wsgi.propagation.CompositePropagator` merges into the
context found by a trace format.

Decisions:

* **Grammar.** A member is ``key OWS "=" OWS value *(OWS ";" OWS property)``; the key is
  an RFC 7230 token and the value is made of ``baggage-octet`` characters. Optional whitespace
  is trimmed. A member that does not match is dropped on its own (the spec lets a
  receiver remove entries it cannot parse); the other members are kept.
* **Values** are percent-decoded as UTF-8 (RFC 3986: ``+`` stays a plus); invalid UTF-8
  becomes U+FFFD. Keys are tokens and are used as sent. On inject, values are
  percent-encoded so that only ``baggage-octet`` characters go out (``%`` and ``+`` are always
  escaped), and items whose key is not a token are skipped, never written.
* **Properties** (``;k=v``, ``;flag``) are validated and then dropped: OpenTracing
  baggage is a plain ``str -> str`` map with nowhere to keep them, and their meaning is
  opaque to the spec.
* **Duplicate keys**: the first one wins (the spec leaves the choice open; the same rule
  as repeated B3 headers).
* **Limits** (the ones OpenTelemetry uses, above the spec's minimums of 64 members and
  8192 bytes): at most 180 members, 4096 bytes per member and 8192 bytes in all. A longer
  header keeps only the members that end within its first 8192 characters, and only the
  first 180 comma-separated parts are read; an over-long member is dropped. Inject applies
  the same limits. Under WSGI a header value is
  latin-1 text, one character per byte, and non-ASCII is never valid here, so character
  counts are byte counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Optional
from urllib.parse import unquote

from ..tracer.context import SpanContext
from ._common import OWS, HeaderName, HeaderNames, is_token, quote_baggage_value, same_name

__all__ = ['W3CBaggagePropagator', 'MAX_MEMBERS', 'MAX_MEMBER_BYTES', 'MAX_BYTES']

_log = logging.getLogger(__name__)

_BAGGAGE = 'baggage'

#: At most this many baggage members are read or written.
MAX_MEMBERS = 180
#: A longer member (``key=value;properties``) is dropped.
MAX_MEMBER_BYTES = 4096
#: The whole ``baggage`` value is cut to the members within this many bytes.
MAX_BYTES = 8192

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*'
_MEMBER_RE = re.compile(
    rf'({_TOKEN})[ \t]*=[ \t]*({_VALUE})(?:[ \t]*;[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*{_VALUE})?)*')


def _parse_baggage(raw: str) -> Optional[dict[str, str]]:
    """Parse a (combined) ``baggage`` value into a dict, or ``None`` when nothing is valid."""
    if len(raw) > MAX_BYTES:
        # Keep only the members that end within the limit; bounded, unlike split().
        cut = raw.rfind(',', 0, MAX_BYTES + 1)
        if cut < 0:
            return None
        raw = raw[:cut]
    baggage: Optional[dict[str, str]] = None
    # The grammar allows 180 list-members; the part after the 180th comma is not read.
    for part in raw.split(',', MAX_MEMBERS)[:MAX_MEMBERS]:
        member = part.strip(OWS)
        if not member or len(member) > MAX_MEMBER_BYTES:
            continue
        match = _MEMBER_RE.fullmatch(member)
        if match is None:
            _log.debug('dropping invalid baggage member %.80r', member)
            continue
        key, value = match.groups()
        if '%' in value:
            value = unquote(value, errors='replace')
        if baggage is None:
            baggage = {key: value}
        elif key not in baggage:
            baggage[key] = value
    return baggage


class W3CBaggagePropagator(HeaderNames):
    """W3C Baggage in the ``baggage`` header (see the module docstring).

    Args:
        header_name: writes ``baggage`` under ``header_name('baggage')``; ``None``
            keeps ``baggage`` (see :meth:`with_header_names`).
    """

    __slots__ = ('_header',)

    #: extract() returns only contexts whose ids are valid (see tracer/context.py).
    checks_ids = True
    #: The headers this format reads, lower case.
    fields: tuple[str, ...] = (_BAGGAGE,)
    #: extract() reads no other header (a tracer may skip it when none is present).
    reads_only_fields = True

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        self._header = (header_name or same_name)('baggage')

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        """Read baggage.

        Args:
            carrier: a header view answering lower-case names.

        Returns:
            A context with ``trace_id`` and ``span_id`` ``None`` that carries only the
            baggage, or ``None`` when there is no valid member. Never raises on bad
            header values.
        """
        try:
            raw = carrier.get(_BAGGAGE)
            if raw is None:
                return None
            baggage = _parse_baggage(raw)
        except (TypeError, AttributeError):
            # A carrier that breaks the contract (a non-str value): tracing must not
            # fail the request. PERF: a try block costs nothing on 3.11 when not raised.
            _log.debug('baggage extract: carrier returned a non-string value', exc_info=True)
            return None
        if baggage is None:
            return None
        return SpanContext(None, None, None, None, False, baggage)

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write the context's baggage items as one ``baggage`` header, within the limits."""
        baggage = context.baggage
        if not baggage:
            return
        members: list[str] = []
        total = -1  # no comma before the first member
        for key, value in baggage.items():
            if not is_token(key):
                _log.debug('not propagating baggage item with invalid key %.80r', key)
                continue
            member = f'{key}={quote_baggage_value(str(value))}'
            if len(member) > MAX_MEMBER_BYTES or total + 1 + len(member) > MAX_BYTES:
                _log.debug('not propagating baggage item %.80r: over the size limit', key)
                continue
            members.append(member)
            total += 1 + len(member)
            if len(members) == MAX_MEMBERS:
                break
        if members:
            carrier[self._header] = ','.join(members)
