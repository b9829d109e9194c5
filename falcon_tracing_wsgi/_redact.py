"""Query-string redaction, shared by the server middleware and the HTTP client spans.

A query value is replaced when its parameter name, percent-decoded and compared without
case, *contains* one of the configured fragments (``token`` catches ``access_token`` and
``X-Amz-Security-Token``). Names and every other value are kept byte for byte, so the
URL stays recognisable. One implementation, so that the same URL is redacted the same
way on both sides of a call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Optional
from urllib.parse import unquote_plus

__all__ = ['DEFAULT_REDACT_QUERY', 'REDACTED', 'compile_names', 'redact_query']

#: Query parameter name fragments whose values are replaced by default.
DEFAULT_REDACT_QUERY = ('token', 'password', 'passwd', 'pwd', 'secret', 'key', 'signature',
                        'sig', 'auth', 'credential', 'session', 'jwt')
REDACTED = 'REDACTED'


def compile_names(names: Iterable[str]) -> Optional[re.Pattern[str]]:
    """One case-insensitive pattern matching any of the name fragments (None: no names)."""
    fragments = [re.escape(name) for name in names if name]
    return re.compile('|'.join(fragments), re.IGNORECASE) if fragments else None


def redact_query(query: str, secret: Optional[re.Pattern[str]],
                 replacement: str = REDACTED) -> str:
    """Return ``query`` with the values of secret-looking parameters replaced."""
    if secret is None or not query:
        return query
    # PERF: most queries hold nothing secret and nothing encoded; one search settles it.
    if '%' not in query and '+' not in query and secret.search(query) is None:
        return query
    fields = query.split('&')
    changed = False
    for index, field in enumerate(fields):
        name, sep, _ = field.partition('=')
        if sep and secret.search(unquote_plus(name) if '%' in name or '+' in name else name):
            fields[index] = name + '=' + replacement
            changed = True
    return '&'.join(fields) if changed else query
