"""Tracing never hurts the app, whatever the app or the server gets wrong.

Through the public middleware only: an app that leaves a scope open must not leave it
active in the server's thread (nor keep its spans, and so every later span, alive), with
every scope manager this package offers and the usual ones of other tracers; a server
that never closes a response must not make the in-flight registry keep it; and a
middleware with no tracer installed must say so instead of tracing nothing silently.
"""

from __future__ import annotations

import gc
import os
import pathlib
import subprocess
import sys
import weakref

import pytest
from opentracing.mocktracer import MockTracer
from opentracing.scope_managers.contextvars import ContextVarsScopeManager

from falcon_tracing_wsgi.middleware import ENVIRON_SPAN, TracingMiddleware, abort_in_flight
from falcon_tracing_wsgi.testing import make_tracer
from falcon_tracing_wsgi.tracer.scope import build_scope_manager

from . import apps
from .harness import call, make_environ


def _ours(name):
    def make():
        return make_tracer(scope_manager=build_scope_manager(name))[0]
    return make


def _gevent():
    pytest.importorskip('gevent')
    return _ours('gevent')()


def _otel_shim():
    pytest.importorskip('opentelemetry.sdk')
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.shim.opentracing_shim import create_tracer
    return create_tracer(TracerProvider())


TRACERS = [
    pytest.param(_ours('contextvars'), id='ours-contextvars'),
    pytest.param(_ours('threadlocal'), id='ours-threadlocal'),
    pytest.param(_gevent, id='ours-gevent'),
    pytest.param(lambda: MockTracer(), id='foreign-threadlocal'),
    pytest.param(lambda: MockTracer(scope_manager=ContextVarsScopeManager()),
                 id='foreign-contextvars'),
    pytest.param(_otel_shim, id='foreign-otel-shim'),
]


@pytest.mark.parametrize('app', [
    pytest.param(apps.leak_in_app, id='leak-in-app-call'),
    pytest.param(apps.leak_in_body, id='leak-in-body-step'),
])
@pytest.mark.parametrize('make', TRACERS)
def test_a_scope_the_app_leaves_open_is_not_kept(make, app):
    """After each request nothing is active, and the leaked spans are garbage."""
    tracer = make()
    wrapped = TracingMiddleware(app, tracer)
    leaked = []
    for _ in range(3):
        environ = make_environ()
        environ['test.tracer'] = tracer
        outcome = call(wrapped, environ)
        assert outcome.status == apps.OK
        assert tracer.scope_manager.active is None
        assert tracer.active_span is None
        leaked += environ.pop('test.leaked')
        del outcome, environ
    gc.collect()
    assert leaked and [ref() for ref in leaked] == [None] * len(leaked)


@pytest.mark.parametrize('make', TRACERS)
def test_an_outer_scope_is_active_again_after_the_request(make):
    """The context is restored to exactly what it was, not merely emptied."""
    tracer = make()
    wrapped = TracingMiddleware(apps.leak_in_body, tracer)
    with tracer.start_active_span('outer') as outer:
        environ = make_environ()
        environ['test.tracer'] = tracer
        call(wrapped, environ)
        assert tracer.active_span is outer.span


@pytest.mark.parametrize('outer_active', [pytest.param(False, id='nothing-before'),
                                           pytest.param(True, id='outer-before')])
# The OpenTelemetry shim's scopes wrap its spans (``scope.span`` is another object).
@pytest.mark.parametrize('make', [t for t in TRACERS if t.id != 'foreign-otel-shim'])
def test_closing_the_server_span_scope_in_the_app_restores_what_was_before(make,
                                                                          outer_active):
    """Inside the app the server span's scope is the active one; closing it (as the
    OpenTracing API allows) makes active what was active before the request."""
    tracer = make()
    seen = {}

    def app(environ, start_response):
        scope = tracer.scope_manager.active
        seen['server'] = scope.span is environ[ENVIRON_SPAN]
        scope.close()
        seen['after_close'] = tracer.active_span
        start_response('200 OK', [])
        return [b'ok']

    wrapped = TracingMiddleware(app, tracer)
    if outer_active:
        with tracer.start_active_span('outer') as outer:
            call(wrapped, make_environ())
            assert seen == {'server': True, 'after_close': outer.span}
            assert tracer.active_span is outer.span
        assert tracer.active_span is None
    else:
        call(wrapped, make_environ())
        assert seen == {'server': True, 'after_close': None}
        assert tracer.active_span is None


# --------------------------------------------------------------------------- unclosed

@pytest.mark.parametrize('app', [
    pytest.param(apps.list_body, id='list'),
    pytest.param(apps.generator_body, id='generator'),
    pytest.param(apps.closing_body, id='closable'),
    pytest.param(apps.write_callable_in_environ, id='in-a-reference-cycle'),
])
@pytest.mark.parametrize('iterate', [
    pytest.param(True, id='sent'), pytest.param(False, id='never-iterated'),
])
def test_a_response_the_server_never_closes_is_reported_and_collected(app, iterate):
    """PEP 3333 says the server calls close(); one that does not leaks nothing: each
    response is collected and its span reported (by the next request), tagged so."""
    tracer, reporter = make_tracer()
    wrapped = TracingMiddleware(app, tracer)
    responses = []
    for number in range(6):
        outcome = call(wrapped, make_environ(), iterate=iterate, close=False)
        responses.append(weakref.ref(outcome.result))
        del outcome
        gc.collect()
        # Each request reports the ones collected before it: nothing accumulates.
        assert len(reporter.spans) == number
    assert abort_in_flight('nothing is running') == 0  # reports the last one too
    gc.collect()
    assert [ref() for ref in responses] == [None] * 6
    spans = reporter.spans
    assert len(spans) == 6
    assert all(span.tags['wsgi.unclosed'] is True for span in spans)
    assert all(span.tags.get('http.aborted', False) is not iterate for span in spans)
    assert all(span.tags['http.status_code'] == 200 for span in spans)


def test_abort_in_flight_still_finds_a_response_the_server_holds():
    """The registry is weak, but a response still in the server's hands is found."""
    tracer, reporter = make_tracer()
    outcome = call(TracingMiddleware(apps.generator_body, tracer), make_environ(),
                   iterate=False, close=False)
    gc.collect()
    assert abort_in_flight('worker timeout') == 1
    (span,) = reporter.spans
    assert span.tags['http.aborted.reason'] == 'worker timeout'
    assert 'wsgi.unclosed' not in span.tags
    outcome.result.close()
    assert len(reporter.spans) == 1


# --------------------------------------------------------------------------- no tracer

_SERVE_THREE = '''
import logging, opentracing
from falcon_tracing_wsgi import TracingMiddleware, install
from falcon_tracing_wsgi.testing import make_tracer

def app(environ, start_response):
    start_response('200 OK', [])
    return [b'ok']

setup = {setup!r}
if setup == 'install':
    install()
wrapped = TracingMiddleware(app, make_tracer()[0]) if setup == 'explicit' else \\
    TracingMiddleware(app)
for _ in range(3):
    environ = {{'REQUEST_METHOD': 'GET', 'PATH_INFO': '/', 'SERVER_NAME': 'h',
               'SERVER_PORT': '80', 'wsgi.url_scheme': 'http'}}
    assert b''.join(wrapped(environ, lambda *args: None)) == b'ok'
'''


@pytest.mark.parametrize('setup, warnings', [
    pytest.param('none', 1, id='plain-middleware-no-tracer'),
    pytest.param('install', 0, id='install'),
    pytest.param('explicit', 0, id='explicit-tracer'),
])
def test_a_middleware_without_tracer_says_so_once(setup, warnings):
    """README's TracingMiddleware(app) without wrap()/install() is never silent."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(('FALCON_TRACING_', 'OTEL_'))}
    env['FALCON_TRACING_REPORTER'] = 'none'
    result = subprocess.run([sys.executable, '-c', _SERVE_THREE.format(setup=setup)],
                            capture_output=True, text=True, timeout=60, env=env,
                            cwd=pathlib.Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if 'NOT traced' in line]
    assert len(lines) == warnings, result.stderr
    for line in lines:
        assert 'falcon_tracing_wsgi.wrap(app)' in line
        assert 'falcon_tracing_wsgi.install()' in line
