"""What a worker loads: ``wrap(app)`` with the default settings must not import the
modules that only other settings use.

Every module loaded stays in each gunicorn worker's memory for its whole life (the
package has a budget of 2 MB per worker over the bare app), so the modules below are
imported on first use, each with a ``PERF:`` comment where that happens. This test runs a
worker's life in a fresh interpreter - import, ``wrap()``, one traced request, a flush to
a real collector over HTTP (which starts the reporter thread and opens the connection) -
and fails if one of them was loaded anyway, so a later change cannot silently bring them
back. Modules the application had already loaded (falcon's own imports) do not count.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

from falcon_tracing_wsgi import bootstrap
from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector

#: Modules that only non-default settings (or tests and tools) need, and what needs them.
LAZY = [
    pytest.param('difflib', id='difflib-for-typo-hints'),
    pytest.param('gzip', id='gzip-for-ZIPKIN_GZIP'),
    pytest.param('encodings.idna', id='idna-codec-for-non-ascii-host-names'),
    pytest.param('stringprep', id='stringprep-for-the-idna-codec'),
    pytest.param('falcon_tracing_wsgi.export.xray', id='xray-encoding'),
    pytest.param('falcon_tracing_wsgi.export.udp', id='udp-sender-for-xray'),
    pytest.param('falcon_tracing_wsgi.zipkin', id='zipkin-tools-package'),
    pytest.param('falcon_tracing_wsgi.zipkin.schema', id='zipkin-schema-check'),
    pytest.param('falcon_tracing_wsgi.zipkin.collector', id='zipkin-collector'),
    pytest.param('http.server', id='http-server-for-the-collector'),
    pytest.param('falcon_tracing_wsgi.otel', id='otel-bridge'),
]

_WORKER = r'''
import json, sys

import falcon

before = set(sys.modules)

import opentracing
from falcon_tracing_wsgi import wrap


class Hello:
    def on_get(self, req, resp):
        resp.media = {'message': 'hello'}


app = falcon.App()
app.add_route('/hello', Hello())
traced = wrap(app)
environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/hello', 'QUERY_STRING': '',
           'SERVER_NAME': '127.0.0.1', 'SERVER_PORT': '8000', 'SERVER_PROTOCOL': 'HTTP/1.1',
           'wsgi.url_scheme': 'http', 'wsgi.input': None, 'wsgi.errors': sys.stderr,
           'wsgi.version': (1, 0), 'wsgi.multithread': False, 'wsgi.multiprocess': True,
           'wsgi.run_once': False}
body = traced(environ, lambda status, headers, exc_info=None: None)
b''.join(body)
getattr(body, 'close', lambda: None)()
flushed = opentracing.global_tracer().reporter.flush(10.0)
print(json.dumps({'flushed': flushed, 'loaded': sorted(set(sys.modules) - before)}))
'''


@pytest.fixture(scope='module')
def worker():
    """The modules a default-configured worker loaded, after one request and a flush."""
    with ZipkinCollector() as collector:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(('FALCON_TRACING_', 'OTEL_', 'AWS_XRAY_'))}
        env.update(FALCON_TRACING_SERVICE_NAME='imports', FALCON_TRACING_ZIPKIN_URL=collector.url)
        result = subprocess.run([sys.executable, '-c', _WORKER], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        report['received'] = len(collector.spans())
    return report


def test_the_worker_really_traced_and_reported(worker):
    # Guards the test below against passing vacuously (a worker that did nothing).
    assert worker['flushed'] is True
    assert worker['received'] == 1
    assert 'falcon_tracing_wsgi.export.http' in worker['loaded']


@pytest.mark.parametrize('module', LAZY)
def test_default_worker_does_not_load(worker, module):
    assert importlib.util.find_spec(module) is not None, f'{module} no longer exists: update LAZY'
    assert module not in worker['loaded']


@pytest.mark.parametrize('hostname, resolvable', [
    pytest.param(socket.gethostname(), True, id='this-host'),
    pytest.param('localhost', True, id='localhost'),
    # Both fail before any DNS query (a label is at most 63 characters): the str lookup
    # raises UnicodeError from the idna codec, the bytes one a resolver error.
    pytest.param('x' * 64 + '.example', False, id='ascii-label-too-long'),
    pytest.param('\u00f6' * 64 + '.example', False, id='non-ascii-label-too-long'),
])
def test_host_address_is_looked_up_without_the_idna_codec(monkeypatch, hostname,
                                                          resolvable):
    # bootstrap passes an ASCII host name as bytes (so the codec is never imported): the
    # address must be the one the str lookup gives, and a name that cannot be looked up
    # leaves the address out of the spans instead of failing wrap().
    want = _str_lookup(hostname) if resolvable else None
    monkeypatch.setattr(socket, 'gethostname', lambda: hostname)
    bootstrap._host_ipv4.cache_clear()
    try:
        assert bootstrap._host_ipv4() == want
    finally:
        bootstrap._host_ipv4.cache_clear()


def _str_lookup(name):
    address = socket.gethostbyname(name)
    return address if address.count('.') == 3 else None
