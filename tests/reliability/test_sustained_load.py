"""Sustained load with the collector up: every span arrives and memory stays flat.

One run of ``SECONDS`` seconds (two threads of requests through ``wrap()``, the default
queue and batch sizes) measured by :func:`tests.reliability.scenarios.run_sustained`.
Memory is :mod:`tracemalloc`'s total sampled every 0.1 s; the mean of the last third of
the run may exceed the mean of the first third by at most ``GROWTH_BOUND``. A leak of
100 bytes per request would add about 650 KiB between the two (some 6,500 requests
apart at the ~1,100 requests/s this box manages under tracemalloc); the queue filling
and emptying between uploads moves the samples by up to about 300 KiB.
"""

from __future__ import annotations

import pytest

from . import scenarios
from ._remote import RemoteCollector
SECONDS = 9.0
GROWTH_BOUND = 512 * 1024


@pytest.fixture(scope='module')
def run(collector_host: RemoteCollector) -> scenarios.Sustained:
    return scenarios.run_sustained(collector_host, SECONDS)


def test_the_run_is_bounded_in_time(run: scenarios.Sustained) -> None:
    assert SECONDS <= run.seconds < SECONDS + 5.0
    assert run.shutdown < float(scenarios.SETTINGS['FALCON_TRACING_SHUTDOWN_TIMEOUT']) + 0.5


def test_spans_received_equal_requests_answered(run: scenarios.Sustained) -> None:
    assert run.failed_requests == 0
    assert run.answered > 1000
    assert run.received == run.answered
    assert run.stats == {'queued': 0, 'sent': run.answered, 'dropped': 0, 'failed': 0}


def test_memory_is_flat_over_the_run(run: scenarios.Sustained) -> None:
    first, _, last = run.thirds
    assert first > 0
    assert last - first <= GROWTH_BOUND, run.thirds
