"""The service does not notice when the tracing backend misbehaves.

Each scenario of :mod:`tests.reliability.scenarios` (the collector down, answering
500/503/400, hanging, slow, restarted, behind an untrusted certificate) runs once per
session, under load through ``wrap()``; the tests below each check one promise against
every scenario's measurements, so a failure names both the promise and the scenario.

Timing bounds are generous on purpose (they must hold on a loaded 2-core CI box): what
they catch is a request thread that waits for the collector, which costs at least a
backoff (tens of milliseconds) or a timeout (seconds), not scheduling noise.
"""

from __future__ import annotations

from typing import Callable

import pytest

from . import scenarios
from ._remote import RemoteCollector
from .scenarios import Result

#: Slack for a latency percentile: twice the healthy value plus this many seconds.
P99_SLACK = 0.005
P50_SLACK = 0.001
#: A recovery must come within one export timeout (a send that was in progress) + 1 s.
RECOVERY_BOUND = scenarios.EXPORT_TIMEOUT + 1.0

FAULTS = [
    pytest.param('down', id='down'),
    pytest.param('http_500', id='500'),
    pytest.param('http_503', id='503'),
    pytest.param('http_400', id='400'),
    pytest.param('hang', id='hang', marks=pytest.mark.slow),
    pytest.param('slow', id='slow', marks=pytest.mark.slow),
    pytest.param('restart', id='restart'),
    pytest.param('tls', id='tls'),
]
ALL = [pytest.param('healthy', id='healthy'), *FAULTS]
RECOVERING = [param for param in FAULTS if param.values[0] != 'tls']


@pytest.fixture(scope='session')
def _results() -> dict[str, Result]:
    return {}


@pytest.fixture
def outcome(_results: dict[str, Result], collector_host: RemoteCollector, per_span: float,
            request: pytest.FixtureRequest) -> Callable[[str], Result]:
    """Runs a scenario the first time a test asks for it; later tests read the result."""
    def get(name: str) -> Result:
        if name not in _results:
            cert = request.getfixturevalue('tls_certificate') if name == 'tls' else None
            _results[name] = scenarios.run_scenario(name, collector_host, cert, per_span)
        return _results[name]
    return get


@pytest.mark.parametrize('name', ALL)
def test_no_request_fails(outcome: Callable[[str], Result], name: str) -> None:
    result = outcome(name)
    assert result.requests > scenarios.LOAD_REQUESTS * 2
    assert result.failed_requests == 0


@pytest.mark.parametrize('name', ALL)
def test_every_finished_span_is_counted_exactly_once_after_close(
        outcome: Callable[[str], Result], name: str) -> None:
    result = outcome(name)
    stats = result.stats
    assert stats['queued'] == 0, stats
    assert stats['sent'] + stats['dropped'] + stats['failed'] == result.finished, stats


@pytest.mark.parametrize('name', ALL)
def test_the_collector_received_what_was_counted_sent(
        outcome: Callable[[str], Result], name: str) -> None:
    result = outcome(name)
    sent, failed = result.stats['sent'], result.stats['failed']
    if scenarios.BY_NAME[name].exact_delivery:
        assert result.received == sent
    else:  # it may store a batch the client had given up on (counted failed)
        assert sent <= result.received <= sent + failed


def test_a_healthy_collector_gets_every_span(outcome: Callable[[str], Result]) -> None:
    result = outcome('healthy')
    assert result.stats == {'queued': 0, 'sent': result.finished, 'dropped': 0, 'failed': 0}
    assert result.received == result.finished
    assert result.close_ok


@pytest.mark.parametrize('name', FAULTS)
def test_spans_that_could_not_be_delivered_are_counted_not_hidden(
        outcome: Callable[[str], Result], name: str) -> None:
    stats = outcome(name).stats
    assert stats['dropped'] + stats['failed'] > 0


@pytest.mark.parametrize('name', FAULTS)
def test_request_latency_stays_where_it_was_with_the_collector_up(
        outcome: Callable[[str], Result], name: str) -> None:
    healthy, result = outcome('healthy'), outcome(name)
    assert result.p50 <= 1.5 * healthy.p50 + P50_SLACK, (result.p50, healthy.p50)
    assert result.p99 <= 2 * healthy.p99 + P99_SLACK, (result.p99, healthy.p99)


@pytest.mark.parametrize('name', ALL)
def test_memory_stays_within_a_full_queue(outcome: Callable[[str], Result], per_span: float,
                                          name: str) -> None:
    result = outcome(name)
    # The bound is well below what the memory phase's spans would hold if all were kept.
    assert result.memory_bound < scenarios.LOAD_REQUESTS * per_span
    assert 0 < result.memory_peak <= result.memory_bound


@pytest.mark.parametrize('name', RECOVERING)
def test_delivery_resumes_when_the_collector_comes_back(
        outcome: Callable[[str], Result], name: str) -> None:
    result = outcome(name)
    assert result.recovered is True
    assert result.recovery is not None and result.recovery < RECOVERY_BOUND


def test_an_untrusted_certificate_fails_every_send_without_retries(
        outcome: Callable[[str], Result]) -> None:
    result = outcome('tls')
    assert result.stats['sent'] == 0 and result.received == 0
    assert result.recovered is None


@pytest.mark.parametrize('name', ALL)
def test_shutdown_finishes_within_its_deadline(outcome: Callable[[str], Result],
                                               name: str) -> None:
    result = outcome(name)
    assert result.shutdown_deadline == scenarios.SHUTDOWN_TIMEOUT
    assert result.shutdown < result.shutdown_deadline + scenarios.SHUTDOWN_MARGIN
