"""One call through each client integration, for the table-driven tests."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

import opentracing
import pytest
import urllib3

from falcon_tracing_wsgi.integrations.httpx import traced_async_client, traced_client
from falcon_tracing_wsgi.integrations.requests import TracedSession
from falcon_tracing_wsgi.integrations.urllib3 import TracedPoolManager

from ._server import TIMEOUT

__all__ = ['CLIENTS', 'BY_NAME', 'Call']

Call = Callable[[Optional[opentracing.Tracer], str, str, dict[str, str]], int]


def _requests(tracer: Any, method: str, url: str, headers: dict[str, str]) -> int:
    with TracedSession(tracer=tracer) as session:
        return session.request(method, url, headers=headers, timeout=TIMEOUT).status_code


def _httpx(tracer: Any, method: str, url: str, headers: dict[str, str]) -> int:
    with traced_client(tracer, timeout=TIMEOUT, follow_redirects=True) as client:
        return client.request(method, url, headers=headers).status_code


def _httpx_async(tracer: Any, method: str, url: str, headers: dict[str, str]) -> int:
    async def call() -> int:
        async with traced_async_client(tracer, timeout=TIMEOUT,
                                       follow_redirects=True) as client:
            return (await client.request(method, url, headers=headers)).status_code
    return asyncio.run(call())


def _urllib3(tracer: Any, method: str, url: str, headers: dict[str, str]) -> int:
    # No retries here (the urllib3 tests cover them): one attempt, one span.
    manager = TracedPoolManager(tracer=tracer, timeout=TIMEOUT,
                                retries=urllib3.Retry(total=None, connect=0, read=0,
                                                      status=0, other=0, redirect=5))
    try:
        return manager.request(method, url, headers=headers).status
    finally:
        manager.clear()


CLIENTS = [
    pytest.param(_requests, 'requests', id='requests'),
    pytest.param(_httpx, 'httpx', id='httpx'),
    pytest.param(_httpx_async, 'httpx', id='httpx-async'),
    pytest.param(_urllib3, 'urllib3', id='urllib3'),
]

BY_NAME: dict[str, Call] = {'requests': _requests, 'httpx': _httpx,
                            'httpx-async': _httpx_async, 'urllib3': _urllib3}
