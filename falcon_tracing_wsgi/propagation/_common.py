"""Bounded building blocks shared by the propagation codecs (private).

Every codec reads header text that a client controls, so the helpers here follow three
rules: look at a bounded prefix of a value before doing anything that is linear in its
length (``split``, regular expressions, ``lower``), allocate nothing on the common path,
and never raise on odd text.

Hex ids are checked by the codecs with precompiled full-match patterns spelled with
explicit ranges (``int(x, 16)`` would also accept ``_``, ``+``, ``0x`` and spaces, and
``\\d`` non-ASCII digits). Where upper case is accepted, the lower-case pattern is tried
first and the value is only lower-cased on the rare slow path.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import quote

#: RFC 7230 section 3.2.3 optional whitespace.
OWS = ' \t'

#: RFC 7230 section 3.2.6 ``token``: a legal header name and a legal W3C baggage key.
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# W3C Baggage ``baggage-octet`` minus ``%`` (always escaped so decoding is unambiguous) and
# ``+`` (form decoders such as ``unquote_plus`` would read it as a space). Letters, digits
# and ``_.-~`` are always safe for ``quote``.
_BAGGAGE_SAFE = "!#$&'()*/:<=>?@[]^`{|}"
_BAGGAGE_PLAIN_RE = re.compile(r"[0-9A-Za-z_.\-~!#$&'()*/:<=>?@\[\]^`{|}]*")
_JAEGER_PLAIN_RE = re.compile(r'[0-9A-Za-z_.\-~/]*')


def first_value(value: str, limit: int) -> Optional[str]:
    """Return the first of several comma-joined header values, without OWS.

    Under WSGI a repeated header arrives as one string joined with ``,`` (B3-H4), and the
    first value wins (B3-H5). The search for the comma stops after ``limit`` + 1
    characters, so a huge value costs the same as a small one.

    Args:
        value: the raw header value.
        limit: the longest legal single value (a little whitespace is tolerated on top).

    Returns:
        The first value with spaces and tabs stripped, or ``None`` when it is longer than
        ``limit`` + 8 characters.
    """
    bound = limit + 8
    if len(value) <= bound:
        # PERF: the common short value: ``in`` is a single memchr, no call with arguments.
        if ',' in value:
            value = value[:value.index(',')]
    else:
        comma = value.find(',', 0, bound + 1)
        if comma < 0:
            return None
        value = value[:comma]
    value = value.strip(OWS)
    return value if len(value) <= limit else None


def is_token(value: str) -> bool:
    """Whether ``value`` is an RFC 7230 token (safe as a header name or baggage key)."""
    return TOKEN_RE.fullmatch(value) is not None


def quote_baggage_value(value: str) -> str:
    """Percent-encode a baggage value (UTF-8) so it only holds ``baggage-octet`` characters.

    A lone surrogate, which UTF-8 cannot encode, is sent as ``?`` rather than raising.
    """
    # PERF: most values need no escaping; a full match is cheaper than quote()'s setup.
    if _BAGGAGE_PLAIN_RE.fullmatch(value) is not None:
        return value
    return quote(value, safe=_BAGGAGE_SAFE, errors='replace')


def quote_jaeger_value(value: str) -> str:
    """Encode a ``uberctx-*`` value like jaeger-client (``urllib.parse.quote``, ``/`` kept)."""
    if _JAEGER_PLAIN_RE.fullmatch(value) is not None:
        return value
    return quote(value, errors='replace')
