"""AWS X-Ray propagation: the ``X-Amzn-Trace-Id`` header.

``X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``

``Root`` names the trace, ``Parent`` the caller's segment or subsegment (its span id), and
``Sampled`` the caller's decision: ``1``, ``0`` or ``?`` ("requested": the receiver
decides). Load balancers, API Gateway and Lambda add further fields (``Self``,
``Lineage``, ...), which a service must pass on.

Decisions:

* **Trace ids.** A root ``1-{8 hex}-{24 hex}`` is our 32-hex trace id with the version
  and the hyphens taken out, and back: :func:`to_xray_trace_id` and
  :func:`from_xray_trace_id` are exact inverses for 128-bit ids. The first 8 hex digits
  are the epoch seconds at which X-Ray-style ids are created (see
  :class:`~falcon_tracing_wsgi.tracer.ids.XRayIdGenerator`); here they are copied, never
  checked against the clock, so any valid trace continues. A 64-bit trace id (16 hex)
  is sent left-padded with zeros, which the padded-id rule of the composite propagator
  treats as the same trace.
* **Validation.** The version must be ``1``; the root's two parts must be 8 and 24 hex
  digits and not all zero; ``Parent`` must be 16 hex digits and not zero. Hex may be in
  either case (it is lower-cased). ``Sampled`` must be ``0``, ``1`` or ``?``. Any other
  value of these three fields, a field without ``=`` or a repeated one makes the header
  invalid: no context, a new trace.
* **Root without Parent** (an Application Load Balancer or API Gateway started the trace
  and no instrumented caller exists): the context has the trace id and no span id (see
  :class:`~falcon_tracing_wsgi.tracer.context.SpanContext`), so the server span joins
  the balancer's trace as its root span, with the balancer's ``Sampled`` decision or,
  without one, the sampler's; the other fields (``Lineage``) go on with it. This is what
  the X-Ray SDKs do: the service's segment appears under the balancer's trace id.
* **Other fields** are kept in order, as one ``;``-joined text, in
  ``SpanContext.extra[EXTRA_KEY]`` and written back after ours, so ``Lineage`` reaches
  the next service unchanged. ``Self`` (the load balancer's own id for its hop) is
  dropped, as the X-Ray SDKs drop it: it names the balancer's request, not ours. A field
  whose name is not a token or whose value has control characters, spaces, ``;`` or
  ``,`` is dropped on its own; the trace is kept.
* **Bounds.** A value longer than :data:`MAX_HEADER_LENGTH` characters is ignored before
  it is split, and at most :data:`MAX_OTHER_FIELDS` other fields are kept. Under WSGI a
  repeated header arrives joined with ``,``; the first value wins.
* **Inject** writes ``Root``, ``Parent`` (this span's id) and ``Sampled=1`` or ``0``
  (``1`` for debug; ``?`` only for a context without a decision), then the kept fields.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Optional

from ..tracer.context import SpanContext
from ._common import OWS, HeaderName, HeaderNames, first_value, same_name

__all__ = ['XRayPropagator', 'to_xray_trace_id', 'from_xray_trace_id', 'EXTRA_KEY',
           'HEADER', 'MAX_HEADER_LENGTH', 'MAX_OTHER_FIELDS']

_log = logging.getLogger(__name__)

#: The header name as written on inject.
HEADER = 'X-Amzn-Trace-Id'
_FIELD = 'x-amzn-trace-id'
#: ``SpanContext.extra`` key holding the header's other fields, ``;``-joined.
EXTRA_KEY = 'x-amzn-trace-id'
#: Longer header values are ignored (a new trace); real ones are under 200 characters.
MAX_HEADER_LENGTH = 2048
#: At most this many fields other than Root, Parent and Sampled are passed on.
MAX_OTHER_FIELDS = 16

_SAMPLED = {'1': True, '0': False, '?': None}
# PERF: what the X-Ray SDKs and our own inject send; one full match and no splitting.
_COMMON_RE = re.compile(
    r'Root=1-([0-9a-f]{8})-([0-9a-f]{24});Parent=([0-9a-f]{16});Sampled=([01?])')
_ROOT_RE = re.compile(r'1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})')
_ID_RE = re.compile(r'[0-9a-fA-F]{16}')
_KEY_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_RE = re.compile(r'[\x21-\x2b\x2d-\x3a\x3c-\x7e]*')  # visible ASCII but ',' and ';'


def to_xray_trace_id(trace_id: str) -> str:
    """Format our hex trace id as an X-Ray root: ``1-{first 8 hex}-{last 24 hex}``.

    Args:
        trace_id: 32 (or 16, left-padded with zeros) lower-case hex characters.
    """
    if len(trace_id) != 32:
        trace_id = trace_id.rjust(32, '0')
    return f'1-{trace_id[:8]}-{trace_id[8:]}'


def from_xray_trace_id(root: str) -> Optional[str]:
    """Our 32-hex trace id for an X-Ray root, or ``None`` when the root is invalid."""
    match = _ROOT_RE.fullmatch(root.strip(OWS))
    if match is None:
        return None
    trace_id = (match.group(1) + match.group(2)).lower()
    return trace_id if trace_id.strip('0') else None


def _parse(value: str) -> Optional[SpanContext]:
    """Parse one header value; ``None`` when it is invalid or says nothing."""
    match = _COMMON_RE.fullmatch(value)
    if match is not None:
        root, random, parent, flag = match.groups()
        trace_id = root + random
        if not trace_id.strip('0') or not parent.strip('0'):
            return None
        return SpanContext(trace_id, parent, None, _SAMPLED[flag])

    trace_id = parent = None
    sampled: Optional[bool] = None
    seen: set[str] = set()
    others: list[str] = []
    for field in value.split(';'):
        key, sep, raw = field.partition('=')
        key = key.strip(OWS)
        raw = raw.strip(OWS)
        if not key and not sep:
            continue  # an empty field, e.g. after a trailing ';'
        if not sep:
            return None
        known = key.lower()
        if known in ('root', 'parent', 'sampled'):
            if known in seen:
                return None
            seen.add(known)
            if known == 'root':
                trace_id = from_xray_trace_id(raw)
                if trace_id is None:
                    return None
            elif known == 'parent':
                if _ID_RE.fullmatch(raw) is None or not raw.strip('0'):
                    return None
                parent = raw.lower()
            else:
                if raw not in _SAMPLED:
                    return None
                sampled = _SAMPLED[raw]
        elif known == 'self':
            continue
        elif (len(others) < MAX_OTHER_FIELDS and _KEY_RE.fullmatch(key) is not None
              and _VALUE_RE.fullmatch(raw) is not None):
            others.append(f'{key}={raw}')
        else:
            _log.debug('X-Ray extract: dropping field %.80r', field)
    extra = {EXTRA_KEY: ';'.join(others)} if others else None
    if trace_id is not None:
        # With a Root alone (no Parent) the span id is None: a trace to join, no caller.
        return SpanContext(trace_id, parent, None, sampled, False, None, None, extra)
    if sampled is not None:
        # A decision without a trace (no Root): a new trace that keeps it.
        return SpanContext(None, None, None, sampled, False, None, None, extra)
    return None


class XRayPropagator(HeaderNames):
    """The ``X-Amzn-Trace-Id`` header (see the module docstring).

    Args:
        header_name: writes the header under ``header_name(HEADER)``; ``None`` keeps
            :data:`HEADER` (see :meth:`with_header_names`).
    """

    __slots__ = ('_header',)

    #: extract() returns only contexts whose ids are valid (see tracer/context.py).
    checks_ids = True
    #: The header this format reads, lower case.
    fields: tuple[str, ...] = (_FIELD,)
    #: extract() reads no other header (a tracer may skip it when none is present).
    reads_only_fields = True

    def __init__(self, header_name: Optional[HeaderName] = None) -> None:
        self._header = (header_name or same_name)(HEADER)

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        """Read the caller's context from ``X-Amzn-Trace-Id``.

        Args:
            carrier: a header view answering lower-case names.

        Returns:
            The caller's context; a context without a span id when the header has a
            ``Root`` and no ``Parent``, without ids when it carries only a decision;
            ``None`` when the header is absent or invalid. Never raises on bad header
            values.
        """
        try:
            raw = carrier.get(_FIELD)
            if raw is None:
                return None
            value = first_value(raw, MAX_HEADER_LENGTH)
            context = _parse(value) if value else None
            if context is None:
                _log.debug('ignoring X-Amzn-Trace-Id %.80r', raw)
            return context
        except (TypeError, AttributeError):
            # A carrier that breaks the contract (a non-str value): never fail the request.
            _log.debug('X-Ray extract: carrier returned a non-string value', exc_info=True)
            return None

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write ``X-Amzn-Trace-Id`` for ``context`` (nothing for a context without ids)."""
        if context.trace_id is None or context.span_id is None:
            return
        if context.debug or context.sampled:
            flag = '1'
        else:
            flag = '0' if context.sampled is False else '?'
        value = f'Root={to_xray_trace_id(context.trace_id)};Parent={context.span_id};' \
                f'Sampled={flag}'
        others = context.extra.get(EXTRA_KEY) if context.extra else None
        if others:
            value = f'{value};{others}'
        carrier[self._header] = value
