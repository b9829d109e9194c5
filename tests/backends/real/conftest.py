"""Session fixtures: one real Zipkin and one real Jaeger for all the tests in this folder.

Where Java or Go is missing the tests are skipped with the reason, unless the run must
prove them: with ``CI`` set or ``TRACING_BACKENDS_REQUIRED=1`` a backend that cannot
be had or started fails the run. A cached server that does not start always fails.
"""

from __future__ import annotations

import os

import pytest

from .servers import (BackendError, BackendUnavailable, JaegerServer, ZipkinServer,
                      jaeger_binary, zipkin_jar)

# NOTE: not FALCON_TRACING_*: that namespace is the package's configuration (an unknown
# name there warns in every traced process, and the suite hides it from each test).
REQUIRED = bool(os.environ.get('CI')) or \
    os.environ.get('TRACING_BACKENDS_REQUIRED', '') not in ('', '0')
_START_TIMEOUT = 180.0


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.backends)


def _unavailable(what, exc):
    """Skip (a developer without the toolchain) or fail (CI, or required)."""
    message = f'{what} is not available: {exc}'
    if REQUIRED:
        pytest.fail(message + ' (required: CI or TRACING_BACKENDS_REQUIRED is set)',
                    pytrace=False)
    pytest.skip(message)


def _server(what, get, make):
    try:
        server = make(get())
    except (BackendUnavailable, BackendError) as exc:  # no toolchain; build/fetch failed
        _unavailable(what, exc)
    try:
        server.start(timeout=_START_TIMEOUT)
    except BackendError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope='session')
def jaeger_binary_path():
    """The cached (or freshly built) Jaeger binary, for tests that start their own."""
    try:
        return jaeger_binary()
    except (BackendUnavailable, BackendError) as exc:
        _unavailable('Jaeger', exc)


@pytest.fixture(scope='session')
def zipkin_server():
    """Zipkin (in-memory storage) on a free 127.0.0.1 port."""
    server = _server('Zipkin', zipkin_jar, ZipkinServer)
    yield server
    server.close()


@pytest.fixture(scope='session')
def jaeger_server():
    """Jaeger v2 all-in-one (memory storage), every endpoint on a free 127.0.0.1 port."""
    server = _server('Jaeger', jaeger_binary, JaegerServer)
    yield server
    server.close()
