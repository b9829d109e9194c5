"""Bounded building blocks shared by the propagation codecs (private).

Every codec reads header text that a client controls, so the helpers here follow three
rules: look at a bounded prefix of a value before doing anything that is linear in its
length (``split``, regular expressions, ``lower``), allocate nothing on the common path,
and never raise on odd text.

Hex ids are checked by the codecs with precompiled full-match patterns spelled with
explicit ranges (``int(x, 16)`` would also accept ``_``, ``+``, ``0x`` and spaces, and
``\\d`` non-ASCII digits). Where upper case is accepted, the lower-case pattern is tried
first and the value is only lower-cased on the rare slow path.

:class:`HeaderNames` is the base of every format: it gives each one
``with_header_names``, which makes a copy that injects under transformed header names
(the WSGI middleware writes straight into the environ as ``HTTP_X_B3_TRACEID``). Each
format resolves its static names once, in ``__init__``, into ``__slots__`` attributes,
so its one ``inject`` serves both spellings at the cost of an attribute read per header.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, TypeVar
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

#: Maps a header name, as a format writes it by default, to the name to write instead.
HeaderName = Callable[[str], str]

_F = TypeVar('_F', bound='HeaderNames')


def same_name(name: str) -> str:
    """The default :data:`HeaderName`: every header keeps its canonical name."""
    return name


class HeaderNames:
    """Base of the formats: the names their ``inject`` writes can be transformed.

    A subclass takes an optional :data:`HeaderName` as its only constructor argument and
    resolves every static header name through it once, keeping the result in a slot that
    ``inject`` reads. Renaming always starts from the canonical names, so renaming a
    renamed propagator does not compose the two functions.

    Args:
        header_name: maps each canonical header name to the one to write; ``None``
            keeps the canonical names.
    """

    __slots__ = ()

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        pass  # subclasses with headers to name resolve them here

    def with_header_names(self: _F, name: HeaderName) -> _F:
        """Return a propagator of this format that injects under ``name(header)``.

        ``extract`` is unchanged: it still reads lower-case names through the carrier.

        Args:
            name: called once per static header (``X-B3-TraceId``, ``traceparent``,
                ...) now, and per item for headers named at inject time (Jaeger's
                ``uberctx-{key}``).
        """
        return type(self)(name)


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
