"""The command line: ``view`` on span files, usage errors and exit codes, the console script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from falcon_tracing_wsgi.__main__ import main

TRACE = 'a' * 32


def span(span_id, name, service, parent=None, kind='SERVER', start=1_000_000, duration=500,
         tags=None):
    value = {'traceId': TRACE, 'id': span_id, 'name': name, 'kind': kind,
             'timestamp': start, 'duration': duration, 'localEndpoint': {'serviceName': service},
             'tags': tags or {'http.status_code': '200'}}
    if parent:
        value['parentId'] = parent
    return value


SPANS = [
    span('1' * 16, 'get /checkout', 'frontend'),
    span('2' * 16, 'http get', 'frontend', parent='1' * 16, kind='CLIENT', start=1_000_100,
         duration=300),
    span('3' * 16, 'get /items', 'backend', parent='2' * 16, start=1_000_150, duration=100,
         tags={'http.status_code': '500', 'error': 'true'}),
]


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / 'spans.jsonl'
    # what the log reporter writes, with a logging prefix on one line and one bad line
    lines = [json.dumps(SPANS[0]), 'INFO zipkin: ' + json.dumps(SPANS[1]), 'not json',
             json.dumps(SPANS[2]), '']
    path.write_text('\n'.join(lines))
    return path


@pytest.mark.parametrize('layout', [
    pytest.param('jsonl', id='json-lines'),
    pytest.param('array', id='zipkin-api-array'),
])
def test_view_draws_the_trace(tmp_path, jsonl, layout):
    path = jsonl if layout == 'jsonl' else tmp_path / 'trace.json'
    if layout == 'array':
        path.write_text(json.dumps(SPANS))
    code, out, err = run('view', str(path), '--width', '100', '--color', 'never')
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f'Trace {TRACE}  3 spans  services: frontend, backend')
    assert [line.split()[0] for line in lines[1:]] == ['frontend', 'frontend', 'backend']
    assert lines[3].rstrip().endswith('500  ERROR')
    assert '\x1b[' not in out
    assert ('1 lines or items skipped' in err) is (layout == 'jsonl')


def test_view_reads_standard_input(monkeypatch):
    monkeypatch.setattr(sys, 'stdin', io.StringIO('\n'.join(json.dumps(s) for s in SPANS)))
    code, out, _ = run('view', '-', '--color', 'never')
    assert code == 0
    assert out.startswith(f'Trace {TRACE}  3 spans')


@pytest.mark.parametrize('color, ansi', [
    pytest.param('always', True, id='always'),
    pytest.param('never', False, id='never'),
    pytest.param('auto', False, id='auto-not-a-terminal'),
])
def test_view_colour(jsonl, color, ansi):
    _, out, _ = run('view', str(jsonl), '--color', color)
    assert ('\x1b[' in out) is ansi


@pytest.mark.parametrize('width', [pytest.param(80, id='80'), pytest.param(140, id='140')])
def test_view_width_sets_the_line_length(jsonl, width):
    _, out, _ = run('view', str(jsonl), '--width', str(width), '--color', 'never')
    assert max(len(line) for line in out.splitlines()[1:]) == width


def test_view_of_a_file_without_spans_exits_1(tmp_path):
    path = tmp_path / 'empty.jsonl'
    path.write_text('hello\n{"not": "a span"}\n')
    code, out, err = run('view', str(path))
    assert (code, out) == (1, '')
    assert f'no spans found in {path}' in err


def test_view_of_a_missing_file_exits_2(tmp_path):
    code, out, err = run('view', str(tmp_path / 'nope.jsonl'))
    assert (code, out) == (2, '')
    assert 'cannot read' in err and 'nope.jsonl' in err


@pytest.mark.parametrize('argv, code', [
    pytest.param([], 2, id='no-command'),
    pytest.param(['frobnicate'], 2, id='unknown-command'),
    pytest.param(['view'], 2, id='view-without-file'),
    pytest.param(['view', 'x', '--color', 'pink'], 2, id='bad-choice'),
    pytest.param(['--help'], 0, id='help'),
    pytest.param(['view', '--help'], 0, id='view-help'),
])
def test_usage_exit_codes(capsys, argv, code):
    assert main(argv) == code
    printed = capsys.readouterr()
    if code == 0:
        assert 'exit status' in printed.out
    else:
        assert 'usage: falcon-tracing' in printed.err


def test_help_lists_the_commands(capsys):
    main(['--help'])
    out = capsys.readouterr().out
    assert 'demo' in out and 'view' in out


@pytest.mark.parametrize('argv', [
    pytest.param(['--version'], id='alone'),
    pytest.param(['--version', 'view'], id='before-a-command'),
])
def test_version(argv):
    from falcon_tracing_wsgi import __version__
    assert run(*argv) == (0, f'falcon-tracing-wsgi {__version__}\n', '')


@pytest.mark.parametrize('command', [
    pytest.param([sys.executable, '-m', 'falcon_tracing_wsgi'], id='python-m'),
    pytest.param([sys.executable, '-c', 'import sys; from falcon_tracing_wsgi.__main__ '
                  'import main; sys.exit(main())'], id='console-script-entry'),
])
def test_version_from_the_command_line(command):
    from falcon_tracing_wsgi import __version__
    result = subprocess.run([*command, '--version'], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (0, f'falcon-tracing-wsgi {__version__}\n')


def test_python_dash_m_runs_the_command_line(jsonl):
    result = subprocess.run([sys.executable, '-m', 'falcon_tracing_wsgi', 'view', str(jsonl),
                             '--color', 'never'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'Trace {TRACE}')


def test_python_dash_m_passes_the_exit_status(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'falcon_tracing_wsgi', 'view',
                             str(tmp_path / 'missing')], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2


def test_the_console_script_points_at_main():
    found = entry_points()
    if hasattr(found, 'select'):  # Python 3.10+
        scripts = list(found.select(group='console_scripts', name='falcon-tracing'))
    else:  # Python 3.9: a dict of groups, one entry per copy of the metadata on the path
        scripts = list({e.value: e for e in found.get('console_scripts', ())
                        if e.name == 'falcon-tracing'}.values())
    (script,) = scripts
    assert script.load() is main
