from __future__ import annotations

import opentracing
import pytest
from opentracing.mocktracer import MockTracer
from opentracing.scope_managers.contextvars import ContextVarsScopeManager

from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector

from .certificates import make_certificate


@pytest.fixture
def tracer():
    """A tracer-agnostic stand-in: opentracing's MockTracer with contextvars scopes."""
    return MockTracer(scope_manager=ContextVarsScopeManager())


@pytest.fixture
def collector():
    """A started Zipkin collector on a free 127.0.0.1 port, always stopped afterwards."""
    with ZipkinCollector() as running:
        yield running


@pytest.fixture(scope='session')
def tls_certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 that no client trusts by default."""
    certificate = make_certificate(str(tmp_path_factory.mktemp('tls')))
    if certificate is None:
        pytest.skip('the openssl command is needed to make a self-signed test certificate')
    return certificate


@pytest.fixture(autouse=True)
def _restore_global_tracer():
    saved = opentracing.global_tracer()
    yield
    opentracing.set_global_tracer(saved)


@pytest.fixture(autouse=True)
def _restore_client_span_names():
    """install() sets the process-wide HTTP tag names of client spans; undo it."""
    from falcon_tracing_wsgi import _semconv
    saved = _semconv.default().scheme
    yield
    _semconv.set_default(saved)


@pytest.fixture(autouse=True)
def _clean_tracing_env(monkeypatch):
    """Tests see no FALCON_TRACING_* / OTEL_* variables unless they set them."""
    import os
    for name in list(os.environ):
        if name.startswith(('FALCON_TRACING_', 'OTEL_')):
            monkeypatch.delenv(name)
