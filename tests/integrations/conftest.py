"""Fixtures of the client integrations' tests: a real local HTTP server (``_server.py``),
a refused URL and a MockTracer."""

from __future__ import annotations

import socket
from typing import Any, Iterator

import pytest
from opentracing.mocktracer import MockTracer

from ._server import serve


@pytest.fixture(scope='module')
def server() -> Iterator[Any]:
    with serve() as httpd:
        yield httpd


@pytest.fixture()
def base_url(server: Any) -> str:
    server.received.clear()
    return 'http://127.0.0.1:%d' % server.server_address[1]


@pytest.fixture()
def tracer() -> MockTracer:
    return MockTracer()


@pytest.fixture()
def refused_url() -> Iterator[str]:
    # A bound socket that does not listen refuses connections and keeps the port ours.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    try:
        yield 'http://127.0.0.1:%d/ok' % sock.getsockname()[1]
    finally:
        sock.close()
