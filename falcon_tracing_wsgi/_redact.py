"""Query-string redaction, shared by the server middleware and the HTTP client spans.

A query value is replaced when its parameter name, percent-decoded and compared without
case, matches one of the configured names:

* a name of five characters or more matches *anywhere* in the parameter name (``token``
  catches ``access_token`` and ``X-Amz-Security-Token``);
* a shorter name matches a whole *word* of it, words being split at anything that is not
  a letter or digit and at lower-to-upper case changes (``pin`` catches ``pin``,
  ``card_pin`` and ``cardPin`` but not ``shipping``; ``code`` catches OAuth's ``code``
  and ``auth_code`` but not ``zipcode``), since short names inside other words are
  mostly harmless words.

Names and every other value are kept byte for byte, so the URL stays recognisable. Both
``&`` and ``;`` separate parameters. One implementation, so that the same URL is redacted
the same way on both sides of a call, and in the text of recorded exceptions
(:func:`redact_text`), which often quote the URL they failed on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple, Optional
from urllib.parse import unquote_plus

__all__ = ['DEFAULT_REDACT_QUERY', 'DEFAULT_SECRET', 'REDACTED', 'Secret', 'compile_names',
           'redact_query', 'redact_text']

#: Query parameter names whose values are replaced by default (see the module docstring
#: for how short and long names match).
DEFAULT_REDACT_QUERY = ('token', 'password', 'passwd', 'passphrase', 'pass', 'pwd', 'pw',
                        'secret', 'key', 'apikey', 'signature', 'sig', 'auth', 'oauth',
                        'authorization', 'credential', 'session', 'sid', 'jwt', 'bearer',
                        'private', 'otp', 'pin', 'ssn', 'credit', 'card', 'cvv', 'cvc',
                        'iban', 'code')
REDACTED = 'REDACTED'

#: Names shorter than this match whole words of a parameter name only.
_WORD_NAME_LENGTH = 5
_FIELD_SEPARATOR = re.compile(r'([&;])')
_WORDS = re.compile(r'[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+').findall


class Secret(NamedTuple):
    """Compiled names: what :func:`redact_query` needs, built once per configuration."""

    #: the names no other name is part of, lower-case: a query that contains none of
    #: them holds nothing secret (``pass`` screens for ``password`` too).
    screen: tuple[str, ...]
    #: long names, matched anywhere in a parameter name.
    fragments: tuple[str, ...]
    #: short names, matched against the words of a parameter name.
    words: frozenset[str]


def compile_names(names: Iterable[str]) -> Optional[Secret]:
    """Compile the names to look for (None: no names, nothing redacted)."""
    lowered = tuple(dict.fromkeys(name.lower() for name in names if name))
    if not lowered:
        return None
    screen = tuple(name for name in lowered
                   if not any(other != name and other in name for other in lowered))
    return Secret(screen,
                  tuple(name for name in lowered if len(name) >= _WORD_NAME_LENGTH),
                  frozenset(name for name in lowered if len(name) < _WORD_NAME_LENGTH))


#: The defaults, compiled once.
DEFAULT_SECRET = compile_names(DEFAULT_REDACT_QUERY)


def _is_secret(name: str, secret: Secret) -> bool:
    lowered = name.lower()
    if any(fragment in lowered for fragment in secret.fragments):
        return True
    words = secret.words
    return bool(words) and any(word.lower() in words for word in _WORDS(name))


def redact_query(query: str, secret: Optional[Secret], replacement: str = REDACTED) -> str:
    """Return ``query`` with the values of secret-looking parameters replaced.

    ``secret`` comes from :func:`compile_names`. The cost is linear in the query's length
    with a small constant (one ``lower()`` and a substring search per name), because
    the query is client input and may be huge.
    """
    if secret is None or not query:
        return query
    # PERF: substring tests on a lower-cased copy are ~15x cheaper per byte than a
    # case-insensitive regex; most queries hold nothing secret and are settled here
    # (a short name inside a longer word, ``pin`` in ``shipping``, goes on to the
    # per-parameter test, which does not redact it). A plain loop over the minimal
    # screen costs less than any() over every name (measured: 0.6x the time of the
    # 12-name generator this replaced, with 30 names).
    if not ('%' in query or '+' in query):
        lowered = query.lower()
        for name in secret.screen:
            if name in lowered:
                break
        else:
            return query
    fields = _FIELD_SEPARATOR.split(query) if ';' in query else query.split('&')
    changed = False
    for index, field in enumerate(fields):
        name, sep, _ = field.partition('=')
        if not sep:
            continue
        if '%' in name or '+' in name:
            name = unquote_plus(name)
        if _is_secret(name, secret):
            fields[index] = field.partition('=')[0] + '=' + replacement
            changed = True
    if not changed:
        return query
    return ''.join(fields) if ';' in query else '&'.join(fields)


#: ``name=value`` after ``?``, ``&``, ``;`` or ``#``: a URL query (or fragment) parameter
#: inside free text. The value ends at white space, a quote or the next separator.
_TEXT_PARAMETER = re.compile(r'(?<=[?&;#])([^\s=&;#?\'"<>]+)=([^\s&;#\'"<>]*)')
#: ``scheme://user:password@``: credentials in a URL inside free text.
_TEXT_USERINFO = re.compile(r'([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@\'"<>]+@')


def redact_text(text: str, secret: Optional[Secret] = DEFAULT_SECRET,
                replacement: str = REDACTED) -> str:
    """Return ``text`` (an exception message or traceback) with URL secrets replaced.

    Every ``name=value`` that follows ``?``, ``&``, ``;`` or ``#`` is treated as a URL
    parameter and redacted by the same rule as :func:`redact_query`, wherever the URL
    sits in the text and whether or not it has a scheme (urllib3 quotes only the path:
    ``Max retries exceeded with url: /x?password=...``). ``user:password@`` after a
    scheme is replaced as a whole.
    """
    if not text:
        return text
    if '@' in text and '://' in text:
        text = _TEXT_USERINFO.sub(lambda match: match.group(1) + replacement + '@', text)
    # PERF: most log and exception texts hold no URL parameter at all (every parameter
    # follows one of ?&;#); the Zipkin encoder calls this for every annotation.
    if (secret is None or '=' not in text
            or ('?' not in text and '&' not in text and ';' not in text and '#' not in text)):
        return text
    if not ('%' in text or '+' in text):
        lowered = text.lower()
        for name in secret.screen:
            if name in lowered:
                break
        else:
            return text

    def parameter(match: re.Match[str]) -> str:
        name = match.group(1)
        if '%' in name or '+' in name:
            name = unquote_plus(name)
        if _is_secret(name, secret):
            return match.group(1) + '=' + replacement
        return match.group(0)
    return _TEXT_PARAMETER.sub(parameter, text)
