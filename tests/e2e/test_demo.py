"""``python -m falcon_tracing_wsgi demo`` end to end, and its cross-service check."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from falcon_tracing_wsgi.demo import REQUESTS, cross_service_traces, run
from falcon_tracing_wsgi.demo.processes import GunicornProcess


@pytest.mark.e2e
def test_the_demo_prints_a_waterfall_of_both_services(tmp_path):
    """Run from an unrelated directory, as on a fresh machine after ``pip install``."""
    result = subprocess.run(
        [sys.executable, '-m', 'falcon_tracing_wsgi', 'demo', '--color', 'never',
         '--width', '100'], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    headers = [line for line in out.splitlines() if line.startswith('Trace ')]
    assert len(headers) == len(REQUESTS)
    assert all('services: frontend, backend' in line for line in headers)
    assert f'{sum(r.spans for r in REQUESTS)} spans received' in out
    rows = out.splitlines()
    assert any(row.startswith('frontend    HTTP GET') and 'CLIENT' in row for row in rows)
    assert any(row.startswith('backend       GET /items/{item_id}') for row in rows)
    assert any(row.startswith('backend       GET /fail') and row.endswith('ERROR')
               for row in rows)
    assert '3 of 3 traces cross from frontend to backend' in out
    assert 'FALCON_TRACING_ZIPKIN_URL=http://localhost:9411/api/v2/spans' in out
    assert 'stopped backend and frontend' in out


def _span(span_id, service, kind, parent=None, trace='t1'):
    span = {'traceId': trace, 'id': span_id, 'kind': kind,
            'localEndpoint': {'serviceName': service}}
    if parent is not None:
        span['parentId'] = parent
    return span


@pytest.mark.parametrize('spans, linked', [
    pytest.param([_span('1', 'frontend', 'SERVER'), _span('2', 'frontend', 'CLIENT', '1'),
                  _span('3', 'backend', 'SERVER', '2')], ['t1'], id='linked'),
    pytest.param([_span('1', 'frontend', 'SERVER'), _span('2', 'frontend', 'CLIENT', '1'),
                  _span('3', 'backend', 'SERVER')], [], id='backend-started-its-own-trace'),
    pytest.param([_span('1', 'frontend', 'SERVER'), _span('2', 'frontend', 'CLIENT', '1'),
                  _span('3', 'backend', 'SERVER', '2', trace='t2')], [],
                 id='other-trace'),
    pytest.param([_span('1', 'frontend', 'SERVER'), _span('3', 'backend', 'SERVER', '1')],
                 [], id='parent-is-not-a-client-span'),
    pytest.param([_span('1', 'frontend', 'SERVER')], [], id='frontend-only'),
])
def test_the_demo_only_counts_real_cross_service_links(spans, linked):
    """The demo exits 1 unless this finds a trace: the backend span under the client span."""
    assert cross_service_traces(spans) == linked


def test_the_demo_says_what_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'gunicorn', None)  # makes `import gunicorn` fail
    assert run(sys.stdout) == 2
    assert "the demo needs gunicorn: pip install 'falcon-tracing-wsgi[demo]'" in \
        capsys.readouterr().out


def test_the_demo_fails_with_exit_status_1_when_a_service_does_not_start(monkeypatch):
    """Every server is still stopped, and the output says what went wrong."""
    started = []

    def failing_command(self):
        started.append(self)
        return [sys.executable, '-c', 'import sys; sys.exit(3)']
    monkeypatch.setattr(GunicornProcess, 'command', failing_command)
    out = io.StringIO()
    assert run(out) == 1
    assert 'FAILED: backend exited with status 3 before it was ready' in out.getvalue()
    assert len(started) == 2
    assert all(server.process.returncode is not None for server in started)  # all stopped
