"""Fixtures of the client integrations' tests: a real local HTTP server (``_server.py``)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from ._server import serve


@pytest.fixture(scope='module')
def server() -> Iterator[Any]:
    with serve() as httpd:
        yield httpd


@pytest.fixture()
def base_url(server: Any) -> str:
    server.received.clear()
    return 'http://127.0.0.1:%d' % server.server_address[1]
