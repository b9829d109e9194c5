"""Fixtures for the reliability suites: the collector process and measured span size."""

from __future__ import annotations

from typing import Iterator

import pytest

from ._remote import RemoteCollector
from .scenarios import make_certificate, span_bytes


@pytest.fixture(scope='session')
def collector_host() -> Iterator[RemoteCollector]:
    """One collector process for the whole run; each scenario starts its own collector."""
    host = RemoteCollector()
    try:
        yield host
    finally:
        host.close()


@pytest.fixture(scope='session')
def per_span() -> float:
    """Bytes one finished span of the scenario app holds, measured on this interpreter."""
    return span_bytes()


@pytest.fixture(scope='session')
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 that no client trusts by default."""
    certificate = make_certificate(str(tmp_path_factory.mktemp('tls')))
    if certificate is None:
        pytest.skip('the openssl command is needed to make a self-signed test certificate')
    return certificate
