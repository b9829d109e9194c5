"""Fixtures for the reliability suites: the collector process and measured span size."""

from __future__ import annotations

from typing import Iterator

import pytest

from ._remote import RemoteCollector
from .scenarios import span_bytes


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
