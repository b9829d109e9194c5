"""Memory stays bounded whatever the app or the server gets wrong.

Through the public middleware only: an app that leaves a scope open must not leave it
active in the server's thread (nor keep its spans, and so every later span, alive), with
every scope manager this package offers and the usual ones of other tracers.
"""

from __future__ import annotations

import gc

import pytest
from opentracing.mocktracer import MockTracer
from opentracing.scope_managers.contextvars import ContextVarsScopeManager

from falcon_tracing_wsgi.middleware import TracingMiddleware
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
