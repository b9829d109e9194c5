"""Fixtures for the end-to-end tests: a Zipkin collector, and real gunicorn servers.

Every server binds a free port on 127.0.0.1, is waited for with a bounded loop of
connection attempts, and is always stopped (SIGTERM, then SIGKILL of its process group)
when the test ends, whatever happened.
"""

from __future__ import annotations

import http.client
import pathlib
import re

import pytest

from falcon_tracing_wsgi.demo.processes import GunicornProcess

REPO = pathlib.Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0
SPAN_TIMEOUT = 15.0
REQUEST_TIMEOUT = 15.0
TRACE_HEADER = 'X-Trace-Id'
#: The one summary line per worker (the worker_exit hook), e.g. ``falcon-tracing-wsgi:
#: worker 42 (age 1) exit: zipkin to http://127.0.0.1:9411/api/v2/spans: 12 spans sent,
#: 0 dropped, 0 failed in 0.003 s``.
_SUMMARY = re.compile(r'falcon-tracing-wsgi: worker (\d+) \(age \d+\) exit: \w+ to \S+: '
                      r'(\d+) spans? sent, (\d+) dropped, (\d+) failed')


def start_server(collector, app='tests.e2e.wsgi:app', *, service='e2e', env=None, options=(),
                 workers=1, flush_interval='0.1', ready=True):
    """A started gunicorn (the caller stops it) reporting to ``collector``.

    Ready means listening *and* every worker booted, so that a SIGTERM reaches them all
    (see ``GunicornProcess.wait_workers``).
    """
    server = GunicornProcess(
        app, name=service, cwd=str(REPO),
        env={'FALCON_TRACING_SERVICE_NAME': service,
             'FALCON_TRACING_ZIPKIN_URL': collector.url,
             'FALCON_TRACING_FLUSH_INTERVAL': flush_interval,
             'FALCON_TRACING_RESPONSE_TRACE_HEADER': TRACE_HEADER,
             **(env or {})},
        options=['--workers', str(workers), '--graceful-timeout', '10', *options])
    server.start()
    try:
        if ready:
            server.wait_ready(READY_TIMEOUT)
            server.wait_workers(workers, READY_TIMEOUT)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture
def servers(collector):
    """``servers(app, service=, env=, options=)`` starts a server; all are stopped at the end."""
    started = []

    def start(*args, **kwargs):
        server = start_server(collector, *args, **kwargs)
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


def get(server, path, headers=(), timeout=REQUEST_TIMEOUT):
    """GET on a new connection (untraced); returns (status, headers, body)."""
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=timeout)
    try:
        connection.putrequest('GET', path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.headers, response.read()  # case-insensitive
    finally:
        connection.close()


def worker_summaries(log):
    """(pid, sent, dropped, failed) of every worker_exit summary line in a server log."""
    return [tuple(int(group) for group in match.groups()) for match in _SUMMARY.finditer(log)]
