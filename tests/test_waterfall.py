"""The text waterfall behind ``falcon-tracing view``: loading, grouping, tree order, output."""

from __future__ import annotations

import io
import json
import random
import re
from typing import Any, Optional

import pytest

from falcon_tracing_wsgi._waterfall import (
    group_traces, load_spans, render_file, render_trace)

TRACE = '5af7183fb1d4cf5f'


def _span(span_id: str, name: str, service: str, timestamp: Optional[int],
          duration: Optional[int], parent: Optional[str] = None, kind: Optional[str] = None,
          trace: str = TRACE, status: Optional[str] = None,
          error: Optional[str] = None) -> dict[str, Any]:
    span: dict[str, Any] = {'traceId': trace, 'id': span_id.rjust(16, '0'), 'name': name,
                            'localEndpoint': {'serviceName': service}}
    if parent is not None:
        span['parentId'] = parent.rjust(16, '0')
    for key, value in (('kind', kind), ('timestamp', timestamp), ('duration', duration)):
        if value is not None:
            span[key] = value
    tags = {key: value for key, value in (('http.status_code', status), ('error', error))
            if value is not None}
    if tags:
        span['tags'] = tags
    return span


# A 3-span, 2-service trace: the api's server span, its failing client call, and the
# billing server span whose parent (billing's caller-side span) was never reported.
SPANS = [
    _span('1', 'get /orders', 'api', 1_000_000, 12_000, kind='SERVER', status='200'),
    _span('2', 'HTTP GET', 'api', 1_002_000, 5_000, parent='1', kind='CLIENT',
          status='503', error='true'),
    _span('3', 'get /invoices', 'billing', 1_003_000, 3_000, parent='ff', kind='SERVER',
          status='503', error=''),
]

GOLDEN = '''\
Trace 5af7183fb1d4cf5f  3 spans  services: api, billing  total 12.000 ms
api      get /orders               SERVER  |======================|  12.000 ms  200
api        HTTP GET                CLIENT  |   ==========         |   5.000 ms  503  ERROR
billing    get /invoices (orphan)  SERVER  |     ======           |   3.000 ms  503  ERROR'''


def _write(tmp_path: Any, text: str) -> str:
    path = tmp_path / 'spans.json'
    path.write_text(text, encoding='utf-8')
    return str(path)


def test_golden_waterfall():
    text = render_trace(SPANS, width=90)
    assert text == GOLDEN
    assert max(len(line) for line in text.splitlines()) == 90


def test_output_does_not_depend_on_input_order():
    shuffled = SPANS[:]
    random.Random(4).shuffle(shuffled)
    assert render_trace(shuffled, width=90) == GOLDEN


def test_color_adds_ansi_codes_only():
    colored = render_trace(SPANS, width=90, color=True)
    plain = colored
    for code in ('\x1b[0m', '\x1b[31m', '\x1b[36m', '\x1b[33m'):
        plain = plain.replace(code, '')

    assert '\x1b[31mERROR' in colored
    assert plain == GOLDEN


@pytest.mark.parametrize(('width', 'bar'), [
    pytest.param(90, 22, id='fits-width'),
    pytest.param(120, 52, id='wider'),
    pytest.param(10, 10, id='minimum-bar'),
])
def test_bar_width_follows_the_line_width(width, bar):
    line = render_trace(SPANS, width=width).splitlines()[1]
    assert line.index('|', line.index('|') + 1) - line.index('|') - 1 == bar


@pytest.mark.parametrize('layout', [
    pytest.param(lambda spans: json.dumps(spans), id='json-array'),
    pytest.param(lambda spans: json.dumps(spans, indent=2), id='json-array-pretty'),
    pytest.param(lambda spans: ''.join(json.dumps(s) + '\n' for s in spans), id='json-lines'),
    pytest.param(lambda spans: '\n'.join('INFO zipkin ' + json.dumps(s) for s in spans),
                 id='json-lines-log-prefix'),
    pytest.param(lambda spans: json.dumps(spans[:1]) + '\n' + json.dumps(spans[1:]),
                 id='json-lines-of-batches'),
])
def test_json_and_json_lines_load_the_same_spans(tmp_path, layout):
    loaded = load_spans(_write(tmp_path, layout(SPANS)))
    assert loaded.spans == SPANS
    assert loaded.skipped == 0


@pytest.mark.parametrize(('text', 'count', 'skipped'), [
    pytest.param(json.dumps(SPANS[0]) + '\n\n\n' + json.dumps(SPANS[1]) + '\n', 2, 0,
                 id='blank-lines-ignored'),
    pytest.param(json.dumps(SPANS[0]) + '\n{"traceId": "x", "id": \n' + json.dumps(SPANS[1]),
                 2, 1, id='truncated-line'),
    pytest.param('starting up\n' + json.dumps(SPANS[0]), 1, 1, id='text-line'),
    pytest.param(json.dumps(SPANS[0]) + '\n{"name": "no ids"}\n[1, {"id": "x"}]', 1, 3,
                 id='not-spans'),
    pytest.param(json.dumps([SPANS[0], 'junk', None]), 1, 2, id='array-with-junk'),
    pytest.param(json.dumps(SPANS[0]), 1, 0, id='single-object'),
    pytest.param('', 0, 0, id='empty-file'),
])
def test_bad_lines_are_skipped_and_counted(tmp_path, text, count, skipped):
    loaded = load_spans(_write(tmp_path, text))
    assert (len(loaded.spans), loaded.skipped) == (count, skipped)


def test_load_from_standard_input(monkeypatch):
    monkeypatch.setattr('sys.stdin', io.StringIO(json.dumps(SPANS)))
    assert load_spans('-').spans == SPANS


def test_group_traces_orders_traces_by_first_timestamp():
    late = _span('9', 'late', 'api', 5_000_000, 1, trace='BBBB000000000000')
    early = _span('8', 'early', 'api', 10, 1, trace='cccc000000000000')
    grouped = group_traces([late, *SPANS, early])

    assert list(grouped) == ['cccc000000000000', TRACE, 'bbbb000000000000']
    assert grouped[TRACE] == SPANS


def _names(spans: list[dict[str, Any]]) -> list[str]:
    """Each span line's name column, with its indentation (service names are 1 char)."""
    lines = render_trace(spans, width=100).splitlines()[1:]
    return [re.match(r'\S  ( *\S.*?)  ', line).group(1) for line in lines]


@pytest.mark.parametrize(('spans', 'expected'), [
    pytest.param([_span('1', 'root', 's', 0, 10), _span('3', 'b', 's', 5, 1, parent='1'),
                  _span('2', 'a', 's', 2, 1, parent='1'), _span('4', 'a1', 's', 3, 1, parent='2')],
                 ['root', '  a', '    a1', '  b'], id='children-by-timestamp-depth-first'),
    pytest.param([_span('1', 'root', 's', 0, 10), _span('2', 'x', 's', 1, 1, parent='1'),
                  _span('3', 'y', 's', 1, 1, parent='1')],
                 ['root', '  x', '  y'], id='same-timestamp-by-id'),
    pytest.param([_span('5', 'a', 's', 3, 1, parent='9'), _span('6', 'b', 's', 1, 1, parent='9')],
                 ['b', '  a (orphan)'], id='no-root-earliest-stands-in'),
    pytest.param([_span('1', 'root', 's', 0, 10), _span('2', 'x', 's', 1, 1, parent='3'),
                  _span('3', 'y', 's', 2, 1, parent='2')],
                 ['root', '  x (orphan)', '    y'], id='parent-cycle'),
    pytest.param([_span('1', 'root', 's', 0, 10, kind='SERVER'),
                  _span('2', 'call', 's', 1, 5, parent='1', kind='CLIENT'),
                  _span('2', 'served', 't', 2, 3, parent='1', kind='SERVER')],
                 ['root', '  call', '    served'], id='shared-id-under-its-twin'),
    pytest.param([_span('1', 'root', 's', None, None), _span('2', 'kid', 's', 5, 1, parent='1')],
                 ['root', '  kid'], id='missing-timestamp'),
])
def test_tree_order(spans, expected):
    assert _names(spans) == expected


def test_spans_without_timing_still_get_a_line():
    text = render_trace([_span('1', 'root', 's', None, None), _span('2', 'kid', 's', 5, 1,
                                                                    parent='1')], width=60)
    header, root, kid = text.splitlines()
    assert header.endswith('total 0.001 ms')
    assert '?' in root and root.rstrip().endswith('-  -')
    assert '=' in kid


def test_render_file_renders_every_trace_and_counts_skips(tmp_path):
    other = _span('a', 'solo', 'api', 0, 1_500, trace='00000000000000aa', kind='SERVER')
    path = _write(tmp_path, '\n'.join([json.dumps(s) for s in SPANS] + ['oops',
                                                                       json.dumps(other)]))
    text = render_file(path, width=90)

    first, second, footer = text.split('\n\n')
    assert first.startswith('Trace 00000000000000aa  1 span  services: api  total 1.500 ms')
    assert second == GOLDEN
    assert footer == '(1 skipped: not a Zipkin v2 span)\n'


def test_render_file_without_spans(tmp_path):
    path = _write(tmp_path, 'nothing here\n')
    assert render_file(path) == f'no spans found in {path}\n\n(1 skipped: not a Zipkin v2 span)\n'


def test_render_file_missing_file_raises(tmp_path):
    with pytest.raises(OSError):
        render_file(str(tmp_path / 'absent.json'))
