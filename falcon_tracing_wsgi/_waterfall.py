"""Render Zipkin v2 JSON spans as a text waterfall, for ``falcon-tracing view FILE``.

Input is what the log reporter writes (one Zipkin v2 span object per line) or what
Zipkin's API returns (a JSON array of spans). Output is plain text, one line per span::

    Trace 5af7183fb1d4cf5f  3 spans  services: api, billing  total 12.000 ms
    api      get /orders               SERVER  |======================|  12.000 ms  200
    api        HTTP GET                CLIENT  |   ==========         |   5.000 ms  503  ERROR
    billing    get /invoices (orphan)  SERVER  |     ======           |   3.000 ms  503  ERROR

Columns: service, span name (indented by depth), kind, a timing bar scaled to the whole
trace, duration, the HTTP status (``http.status_code`` or ``http.response.status_code``)
and ``ERROR`` when the span has an ``error`` tag.

Decisions:

* **Deterministic**: the same spans give the same text (children are ordered by
  timestamp, then id; column widths come from the data and ``width`` only), so the
  output can be compared in tests and diffed by people.
* **Lenient input**: a line that is not a span (log prefix aside) is skipped and
  counted, never fatal; a span without a timestamp or duration still gets its line.
* **Broken trees are shown, not hidden**: a span whose parent is not in the file (an
  *orphan*: that service does not report, or its span was dropped) is drawn under the
  root with the marker ``(orphan)``; the same goes for spans caught in a parent cycle.
  A span that shares its id with another (Zipkin's ``shared`` server half of an RPC)
  is drawn under that span.
* **Plain ASCII** unless ``color=True`` (ANSI colours: one per service, red errors).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Optional

from ._semconv import STATUS_CODE_NAMES, first_of

__all__ = ['Loaded', 'load_spans', 'group_traces', 'render_trace', 'render_file']

Span = dict[str, Any]

ORPHAN_MARKER = '(orphan)'
_MAX_SERVICE = 20
_MAX_NAME = 48
_MIN_BAR = 10
_INDENT = '  '
_RESET = '\x1b[0m'
_RED = '\x1b[31m'
_PALETTE = ('\x1b[36m', '\x1b[33m', '\x1b[32m', '\x1b[35m', '\x1b[34m', '\x1b[96m')


class Loaded(NamedTuple):
    """What :func:`load_spans` read."""

    spans: list[Span]
    #: lines (or array items) that were not a span: bad JSON, or no ``traceId``/``id``.
    skipped: int


def load_spans(path: str) -> Loaded:
    """Read spans from a JSON array file or a JSON-lines file (``'-'``: standard input).

    A file that parses as one JSON document is taken as an array of spans (or a single
    span); otherwise every line is parsed on its own. A line may carry a log prefix
    before the ``{`` and may hold an array (a batch). Blank lines are ignored; lines and
    items that are not spans are skipped and counted.

    Raises:
        OSError: the file cannot be read.
    """
    if path == '-':
        text = sys.stdin.read()
    else:
        with open(path, encoding='utf-8', errors='replace') as stream:
            text = stream.read()
    spans: list[Span] = []
    try:
        document = json.loads(text)
    except ValueError:
        skipped = 0
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            value = _parse_line(line)
            if value is None:
                skipped += 1
            else:
                skipped += _collect(value, spans)
        return Loaded(spans, skipped)
    return Loaded(spans, _collect(document, spans))


def _parse_line(line: str) -> Any:
    start = 0 if line[0] in '{[' else line.find('{')  # tolerate a log prefix
    if start < 0:
        return None
    try:
        return json.loads(line[start:])
    except ValueError:
        return None


def _collect(value: Any, spans: list[Span]) -> int:
    """Append the spans in ``value`` to ``spans``; return how many items were not spans."""
    items = value if isinstance(value, list) else [value]
    skipped = 0
    for item in items:
        if (isinstance(item, dict) and isinstance(item.get('traceId'), str)
                and isinstance(item.get('id'), str)):
            spans.append(item)
        else:
            skipped += 1
    return skipped


def group_traces(spans: Iterable[Span]) -> dict[str, list[Span]]:
    """Group spans by trace id, traces ordered by their first timestamp, then id.

    Trace ids are compared in lower case, and a 64-bit id is *not* merged with a 128-bit
    id that ends in it: Zipkin keeps them apart unless told otherwise.
    """
    traces: dict[str, list[Span]] = {}
    for span in spans:
        traces.setdefault(span['traceId'].lower(), []).append(span)

    def first(item: tuple[str, list[Span]]) -> tuple[int, str]:
        stamps = [_int(s.get('timestamp')) for s in item[1]]
        known = [t for t in stamps if t is not None]
        return (min(known) if known else 0, item[0])

    return dict(sorted(traces.items(), key=first))


class _Row(NamedTuple):
    span: Span
    depth: int
    orphan: bool


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return None


def _order_key(span: Span) -> tuple[int, int, str]:
    stamp = _int(span.get('timestamp'))
    return (stamp is None, stamp or 0, span.get('id', ''))


def _tree(spans: Sequence[Span]) -> list[_Row]:
    """Return spans in tree order: parents before children, siblings by timestamp."""
    ordered = sorted(spans, key=_order_key)
    by_id: dict[str, Span] = {}
    parent_of: dict[int, Optional[str]] = {}
    for span in ordered:
        span_id = span['id'].lower()
        if span_id in by_id:
            parent_of[id(span)] = span_id  # the shared half goes under its twin
        else:
            by_id[span_id] = span
            parent = span.get('parentId')
            parent_of[id(span)] = parent.lower() if isinstance(parent, str) else None

    children: dict[int, list[Span]] = {}
    roots: list[Span] = []
    orphans: list[Span] = []
    for span in ordered:
        parent_id = parent_of[id(span)]
        if parent_id is None:
            roots.append(span)
        elif parent_id in by_id and by_id[parent_id] is not span:
            children.setdefault(id(by_id[parent_id]), []).append(span)
        else:
            orphans.append(span)
    if not roots:  # nothing without a parent: the earliest span stands in as the root
        roots.append(orphans.pop(0) if orphans else ordered[0])

    rows: list[_Row] = []
    seen: set[int] = set()

    def visit(span: Span, depth: int, orphan: bool) -> None:
        # Iterative, so a deep (or malicious) trace cannot exhaust the stack.
        stack = [(span, depth, orphan)]
        while stack:
            node, level, marked = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            rows.append(_Row(node, level, marked))
            for child in reversed(children.get(id(node), ())):
                stack.append((child, level + 1, False))

    for root in roots:
        visit(root, 0, False)
    # Orphans, then spans whose parents form a cycle, hang under the first root.
    for span in orphans + ordered:
        visit(span, 1, True)
    return rows


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _service(span: Span) -> str:
    endpoint = span.get('localEndpoint')
    name = endpoint.get('serviceName') if isinstance(endpoint, dict) else None
    return name if isinstance(name, str) and name else '?'


def _ms(micros: Optional[int]) -> str:
    return '-' if micros is None else f'{micros / 1000:.3f} ms'


def render_trace(spans: Sequence[Span], width: int = 100, color: bool = False) -> str:
    """Render one trace as a header line plus one line per span.

    Args:
        spans: the Zipkin v2 spans of one trace (see :func:`group_traces`); not empty.
        width: the total line width to aim for; the timing bar gets what the other
            columns leave (at least 10 characters).
        color: add ANSI colours (a colour per service, errors in red).

    Returns:
        The text, lines joined with ``\\n``, no trailing newline.

    Raises:
        ValueError: ``spans`` is empty.
    """
    if not spans:
        raise ValueError('render_trace() needs at least one span')
    rows = _tree(spans)
    starts = [_int(s.get('timestamp')) for s in spans]
    ends = [t + (_int(s.get('duration')) or 0) for s, t in zip(spans, starts) if t is not None]
    known = [t for t in starts if t is not None]
    begin = min(known) if known else 0
    extent = (max(ends) - begin) if ends else 0

    services = list(dict.fromkeys(_service(row.span) for row in rows))
    trace_id = spans[0]['traceId'].lower()
    header = (f'Trace {trace_id}  {len(spans)} span{"s" if len(spans) != 1 else ""}  '
              f'services: {", ".join(services)}  total {_ms(extent if ends else None)}')

    names = []
    for row in rows:
        name = row.span.get('name') or '?'
        if row.orphan:
            name = f'{name} {ORPHAN_MARKER}'
        names.append(_INDENT * row.depth + _fit(str(name), _MAX_NAME))
    cells = [
        (_fit(_service(row.span), _MAX_SERVICE), names[i],
         str(row.span.get('kind') or '-'), _ms(_int(row.span.get('duration'))),
         str(_status(row.span.get('tags') or {})),
         'error' in (row.span.get('tags') or {}))
        for i, row in enumerate(rows)
    ]
    service_w = max(len(c[0]) for c in cells)
    name_w = max(len(c[1]) for c in cells)
    kind_w = max(len(c[2]) for c in cells)
    ms_w = max(len(c[3]) for c in cells)
    status_w = max(len(c[4]) for c in cells)
    fixed = service_w + name_w + kind_w + ms_w + status_w + 2 * 5 + 2 + len('ERROR') + 2
    bar_w = max(_MIN_BAR, width - fixed)

    palette = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(services)}
    lines = [header]
    for row, (service, name, kind, ms, status, error) in zip(rows, cells):
        bar = '|' + _bar(row.span, begin, extent, bar_w) + '|'
        mark = 'ERROR' if error else ''
        if color:
            service_text = palette[_service(row.span)] + service.ljust(service_w) + _RESET
            mark = _RED + mark + _RESET if error else mark
        else:
            service_text = service.ljust(service_w)
        line = (f'{service_text}  {name.ljust(name_w)}  {kind.ljust(kind_w)}  {bar}  '
                f'{ms.rjust(ms_w)}  {status.rjust(status_w)}  {mark}')
        lines.append(line.rstrip())
    return '\n'.join(lines)


def _bar(span: Span, begin: int, extent: int, bar_w: int) -> str:
    start = _int(span.get('timestamp'))
    if start is None:
        return '?'.center(bar_w)
    duration = _int(span.get('duration')) or 0
    if extent <= 0:
        return '=' * bar_w
    # Integer arithmetic keeps the output identical on every platform.
    left = (start - begin) * bar_w // extent
    right = -((start + duration - begin) * -bar_w // extent)  # ceiling division
    left = min(max(left, 0), bar_w - 1)
    right = min(max(right, left + 1), bar_w)
    return ' ' * left + '=' * (right - left) + ' ' * (bar_w - right)


def render_file(path: str, width: int = 100, color: bool = False) -> str:
    """Render every trace in a span file (see :func:`load_spans`) for the ``view`` command.

    Traces are separated by a blank line; a last line says how many lines were skipped,
    when any were.

    Raises:
        OSError: the file cannot be read.
    """
    loaded = load_spans(path)
    traces = group_traces(loaded.spans)
    parts = [render_trace(spans, width=width, color=color) for spans in traces.values()]
    if not parts:
        parts.append(f'no spans found in {path}')
    if loaded.skipped:
        parts.append(f'({loaded.skipped} skipped: not a Zipkin v2 span)')
    return '\n\n'.join(parts) + '\n'


def _status(tags: dict[str, Any]) -> Any:
    """The HTTP status under either naming scheme (see ``_semconv.py``), or ``-``."""
    status = first_of(tags, STATUS_CODE_NAMES)
    return '-' if status is None else status
