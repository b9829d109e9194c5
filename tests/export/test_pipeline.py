"""BatchReporter: accounting, batching, retries, deadlines, laziness, fork, exit."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any, Optional

import pytest

from falcon_tracing_wsgi._types import SendError
from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
from falcon_tracing_wsgi.export.pipeline import BatchReporter, NoopReporter
from falcon_tracing_wsgi.export.http import HttpSender, frame_json_array

from tests.forks import run_in_child
from tests.spans import make_span

ENCODER = JsonV2Encoder(Endpoint('reporter-test'))
MARGIN = 0.4
THREAD_NAME = 'falcon-tracing-wsgi-export'
LOGGER = 'falcon_tracing_wsgi.export.pipeline'


def counters(reporter: Any) -> dict[str, int]:
    """The four counters of ``stats()`` (the byte figures left out)."""
    stats = reporter.stats()
    return {key: stats[key] for key in ('queued', 'sent', 'dropped', 'failed')}


class RecordingSender:
    """Keeps the batches it is sent; ``script`` lists exceptions to raise first."""

    frame = staticmethod(frame_json_array)
    destination = 'memory'

    def __init__(self, script: Optional[list[Optional[Exception]]] = None) -> None:
        self.script = list(script or [])
        self.batches: list[list[dict[str, Any]]] = []
        self.timeouts: list[Optional[float]] = []
        self.calls = 0
        self.closed = False
        self.cond = threading.Condition()

    def send(self, body: bytes, span_count: int, timeout: Optional[float] = None) -> None:
        self.calls += 1
        self.timeouts.append(timeout)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        batch = json.loads(body)
        assert len(batch) == span_count
        with self.cond:
            self.batches.append(batch)
            self.cond.notify_all()

    def wait_for_batches(self, count: int, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.batches) >= count, timeout)

    def close(self) -> None:
        self.closed = True

    def ids(self) -> list[str]:
        return [span['id'] for batch in self.batches for span in batch]


class GateSender(RecordingSender):
    """Blocks every send until ``gate`` is set; ``entered`` says a send is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def send(self, body: bytes, span_count: int, timeout: Optional[float] = None) -> None:
        self.entered.set()
        assert self.gate.wait(10.0)
        super().send(body, span_count, timeout)


def _total(stats: dict[str, int]) -> int:
    return stats['queued'] + stats['sent'] + stats['dropped'] + stats['failed']


def _reporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def _retryable() -> SendError:
    return SendError('collector down', retryable=True)


def _rejected() -> SendError:
    return SendError('HTTP 400: bad span', retryable=False)


# -- the hot path and laziness --------------------------------------------------------------

def test_no_thread_exists_before_the_first_report() -> None:
    before = len(_reporter_threads())
    reporter = BatchReporter(RecordingSender(), ENCODER, flush_interval=60)
    assert len(_reporter_threads()) == before
    reporter.report(make_span(0))
    assert len(_reporter_threads()) == before + 1
    reporter.report(make_span(1))
    assert len(_reporter_threads()) == before + 1  # started once
    assert reporter.close(5.0)
    assert len(_reporter_threads()) == before


def test_a_full_batch_wakes_the_worker() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, batch_size=4, flush_interval=60)
    for index in range(8):
        reporter.report(make_span(index))
    assert sender.wait_for_batches(2)
    assert [len(batch) for batch in sender.batches] == [4, 4]
    assert sender.ids() == [f'{i + 1:016x}' for i in range(8)]  # in order
    reporter.close(5.0)


def test_every_worker_round_is_woken_by_reports_alone() -> None:
    # The wake-up mark goes out of reach once reached, until the worker takes the
    # wake-up: each later round must still be woken by the reports (no interval here).
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, batch_size=4, flush_interval=60)
    for round_ in range(5):
        for index in range(4 * round_, 4 * round_ + 4):
            reporter.report(make_span(index))
        assert sender.wait_for_batches(round_ + 1), f'round {round_} was not woken'
    assert [len(batch) for batch in sender.batches] == [4] * 5
    reporter.close(5.0)


def test_a_partial_batch_goes_out_after_the_interval() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, batch_size=100, flush_interval=0.05)
    for index in range(3):
        reporter.report(make_span(index))
    assert sender.wait_for_batches(1)
    assert [len(batch) for batch in sender.batches] == [3]
    reporter.close(5.0)


def test_flush_sends_what_is_queued_now() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, batch_size=2, max_queue_size=10,
                             flush_interval=60)
    for index in range(5):
        reporter.report(make_span(index))
    assert reporter.flush(5.0)
    assert sorted(sender.ids()) == [f'{i + 1:016x}' for i in range(5)]
    assert all(len(batch) <= 2 for batch in sender.batches)
    assert counters(reporter) == {'queued': 0, 'sent': 5, 'dropped': 0, 'failed': 0}
    reporter.close(5.0)


def test_flush_with_nothing_queued_is_true_and_starts_no_thread() -> None:
    before = len(_reporter_threads())
    reporter = BatchReporter(RecordingSender(), ENCODER)
    assert reporter.flush(1.0)
    assert len(_reporter_threads()) == before


# -- accounting -----------------------------------------------------------------------------

def test_every_span_is_counted_exactly_once_under_drops() -> None:
    sender = GateSender()
    reporter = BatchReporter(sender, ENCODER, max_queue_size=10, batch_size=10,
                             flush_interval=60)
    for index in range(10):
        reporter.report(make_span(index))
    assert sender.entered.wait(5.0)  # the worker holds 10 spans in a blocked send
    assert counters(reporter) == {'queued': 10, 'sent': 0, 'dropped': 0, 'failed': 0}
    for index in range(10, 25):
        reporter.report(make_span(index))
    assert counters(reporter) == {'queued': 20, 'sent': 0, 'dropped': 5, 'failed': 0}
    sender.gate.set()
    assert reporter.flush(5.0)
    assert counters(reporter) == {'queued': 0, 'sent': 20, 'dropped': 5, 'failed': 0}
    assert sorted(sender.ids()) == [f'{i + 1:016x}' for i in range(20)]  # the newest dropped
    reporter.close(5.0)


def test_drops_are_counted_not_logged(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    sender = GateSender()
    reporter = BatchReporter(sender, ENCODER, max_queue_size=1, batch_size=1,
                             flush_interval=60)
    reporter.report(make_span(0))
    assert sender.entered.wait(5.0)
    reporter.report(make_span(1))
    for index in range(2, 1000):
        reporter.report(make_span(index))
    assert reporter.stats()['dropped'] == 998
    assert caplog.records == []
    sender.gate.set()
    reporter.close(5.0)


def test_the_identity_holds_with_many_threads_reporting() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, max_queue_size=64, batch_size=16,
                             flush_interval=60)
    threads_count, per_thread = 4, 2000
    start = threading.Barrier(threads_count)

    def produce(offset: int) -> None:
        start.wait(5.0)
        for index in range(per_thread):
            reporter.report(make_span(offset + index))
            if index % 500 == 0:
                stats = reporter.stats()
                assert stats['queued'] <= 64 + 16 + threads_count

    threads = [threading.Thread(target=produce, args=(n * per_thread,))
               for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert reporter.close(10.0)
    stats = reporter.stats()
    assert _total(stats) == threads_count * per_thread
    assert stats['queued'] == stats['failed'] == 0
    assert stats['sent'] == len(sender.ids()) == len(set(sender.ids()))


def test_spans_reported_after_close_are_dropped() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, flush_interval=60)
    reporter.report(make_span(0))
    assert reporter.close(5.0)
    assert sender.closed
    reporter.report(make_span(1))
    reporter.report(make_span(2))
    assert counters(reporter) == {'queued': 0, 'sent': 1, 'dropped': 2, 'failed': 0}
    assert reporter.closed
    assert reporter.close(1.0)  # a second close is harmless


class _Unencodable:
    context = None  # breaks the Span contract


def test_spans_that_cannot_be_encoded_fail_alone() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, flush_interval=60)
    reporter.report(make_span(0))
    reporter.report(_Unencodable())
    reporter.report(make_span(0, trace_id='NOT-HEX-AT-ALL!!'))  # encoder returns None
    reporter.report(make_span(1))
    assert not reporter.flush(5.0)
    assert sender.ids() == ['0000000000000001', '0000000000000002']
    assert counters(reporter) == {'queued': 0, 'sent': 2, 'dropped': 0, 'failed': 2}
    reporter.close(5.0)


def test_a_callable_encoder_and_a_sender_without_frame_or_timeout() -> None:
    bodies: list[bytes] = []

    class MinimalSender:
        def send(self, body: bytes, span_count: int) -> None:
            bodies.append(body)

        def close(self) -> None:
            pass

    reporter = BatchReporter(MinimalSender(), ENCODER.encode, flush_interval=60)
    reporter.report(make_span(0))
    assert reporter.flush(5.0)
    assert [span['id'] for span in json.loads(bodies[0])] == ['0000000000000001']
    reporter.close(5.0)


# -- failures and retries -------------------------------------------------------------------

@pytest.mark.parametrize('script,max_retries,calls,stats,flushed', [
    pytest.param([], 2, 1, {'sent': 3, 'failed': 0}, True, id='ok'),
    pytest.param([_retryable()], 2, 2, {'sent': 3, 'failed': 0}, True,
                 id='retry-then-ok'),
    pytest.param([_retryable(), _retryable()], 2, 3, {'sent': 3, 'failed': 0}, True,
                 id='two-retries-then-ok'),
    pytest.param([_retryable()] * 3, 2, 3, {'sent': 0, 'failed': 3}, False,
                 id='retries-exhausted'),
    pytest.param([_retryable()], 0, 1, {'sent': 0, 'failed': 3}, False, id='no-retries'),
    pytest.param([_rejected()], 2, 1, {'sent': 0, 'failed': 3}, False,
                 id='rejected-not-retried'),
    pytest.param([RuntimeError('bug in a custom sender')], 2, 1, {'sent': 0, 'failed': 3},
                 False, id='unexpected-exception'),
])
def test_retries_are_bounded_and_only_for_retryable_errors(
        script: list[Exception], max_retries: int, calls: int, stats: dict[str, int],
        flushed: bool) -> None:
    sender = RecordingSender(script)
    reporter = BatchReporter(sender, ENCODER, flush_interval=60, max_retries=max_retries,
                             retry_backoff=0.0)
    for index in range(3):
        reporter.report(make_span(index))
    assert reporter.flush(5.0) is flushed
    assert sender.calls == calls
    assert counters(reporter) == {'queued': 0, 'dropped': 0, **stats}
    reporter.close(5.0)


def test_the_remaining_time_is_passed_to_the_sender() -> None:
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, flush_interval=60)
    reporter.report(make_span(0))
    assert reporter.flush(2.0)
    (timeout,) = sender.timeouts
    assert timeout is not None and 1.0 < timeout <= 2.0
    reporter.close(5.0)


def test_a_flush_deadline_cuts_the_backoff_and_keeps_the_spans() -> None:
    sender = RecordingSender([_retryable()])
    reporter = BatchReporter(sender, ENCODER, flush_interval=60, retry_backoff=1000.0)
    for index in range(3):
        reporter.report(make_span(index))
    start = time.monotonic()
    assert not reporter.flush(0.3)
    assert time.monotonic() - start < 0.3 + MARGIN
    assert counters(reporter) == {'queued': 3, 'sent': 0, 'dropped': 0, 'failed': 0}
    assert reporter.flush(5.0)  # the spans were kept, and now they go out
    assert sender.ids() == ['0000000000000001', '0000000000000002', '0000000000000003']
    reporter.close(5.0)


def test_flush_and_close_keep_their_deadlines_with_a_hanging_collector(
        collector: ZipkinCollector) -> None:
    collector.set_fault(hang=True)
    reporter = BatchReporter(HttpSender(collector.url, read_timeout=30.0), ENCODER,
                             flush_interval=60)
    for index in range(5):
        reporter.report(make_span(index))

    start = time.monotonic()
    assert not reporter.flush(0.5)
    assert time.monotonic() - start < 0.5 + MARGIN
    assert counters(reporter) == {'queued': 5, 'sent': 0, 'dropped': 0, 'failed': 0}

    start = time.monotonic()
    assert not reporter.close(0.5)
    assert time.monotonic() - start < 0.5 + MARGIN
    stats = reporter.stats()
    assert _total(stats) == 5 and stats['sent'] == 0
    assert collector.spans() == []


def test_a_flush_that_timed_out_loses_nothing_once_the_collector_recovers(
        collector: ZipkinCollector) -> None:
    collector.set_fault(hang=True)
    reporter = BatchReporter(HttpSender(collector.url, read_timeout=30.0), ENCODER,
                             flush_interval=60)
    for index in range(5):
        reporter.report(make_span(index))
    assert not reporter.flush(0.3)
    collector.set_fault()
    assert reporter.flush(5.0)
    assert sorted(span['id'] for span in collector.spans()) == [
        f'{i + 1:016x}' for i in range(5)]  # each once
    assert reporter.close(5.0)


def test_close_waits_for_a_worker_stuck_in_a_send_only_until_its_deadline() -> None:
    sender = GateSender()
    reporter = BatchReporter(sender, ENCODER, batch_size=2, flush_interval=60)
    for index in range(4):
        reporter.report(make_span(index))
    assert sender.entered.wait(5.0)
    start = time.monotonic()
    assert not reporter.close(0.3)
    assert time.monotonic() - start < 0.3 + MARGIN
    # 2 spans in the stuck send (still queued), 2 that close could not send (dropped).
    assert counters(reporter) == {'queued': 2, 'sent': 0, 'dropped': 2, 'failed': 0}
    sender.gate.set()


def test_close_says_false_when_the_batch_in_flight_at_close_fails() -> None:
    # The worker is inside a send when close() begins; that batch is then rejected.
    sender = GateSender()
    sender.script = [SendError('payload rejected', retryable=False)]
    reporter = BatchReporter(sender, ENCODER, batch_size=2, flush_interval=60)
    for index in range(4):
        reporter.report(make_span(index))
    assert sender.entered.wait(5.0)

    def release_once_closing() -> None:
        while not reporter.closed:
            threading.Event().wait(0.001)
        sender.gate.set()

    releaser = threading.Thread(target=release_once_closing)
    releaser.start()
    assert reporter.close(5.0) is False
    releaser.join(5.0)
    assert counters(reporter) == {'queued': 0, 'sent': 2, 'dropped': 0, 'failed': 2}


def test_close_says_true_when_everything_pending_is_sent_after_an_earlier_failure() -> None:
    sender = RecordingSender([SendError('payload rejected', retryable=False)])
    reporter = BatchReporter(sender, ENCODER, flush_interval=60)
    reporter.report(make_span(0))
    assert reporter.flush(5.0) is False  # lost before close, counted and logged then
    reporter.report(make_span(1))
    assert reporter.close(5.0) is True
    assert counters(reporter) == {'queued': 0, 'sent': 1, 'dropped': 0, 'failed': 1}


def test_end_to_end_through_the_collector(collector: ZipkinCollector) -> None:
    reporter = BatchReporter(HttpSender(collector.url), ENCODER, batch_size=10)
    for index in range(25):
        reporter.report(make_span(index))
    assert reporter.flush(5.0)
    assert collector.wait_for_spans(25, 5.0)
    assert reporter.close(5.0)
    assert len({span['id'] for span in collector.spans()}) == 25
    assert collector.rejected_count == 0
    assert collector.connection_count == 1


# -- logging --------------------------------------------------------------------------------

@pytest.mark.parametrize('interval,expected', [
    pytest.param(3600.0, 1, id='one-per-interval'),
    pytest.param(0.0, 3, id='no-limit'),
])
def test_failure_warnings_are_rate_limited(caplog: Any, interval: float,
                                           expected: int) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sender = RecordingSender([_rejected(), _rejected(), _rejected()])
    reporter = BatchReporter(sender, ENCODER, flush_interval=60, warn_interval=interval)
    for index in range(3):
        reporter.report(make_span(index))
        assert not reporter.flush(5.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == expected
    assert 'rejected' in warnings[0].getMessage()
    reporter.report(make_span(3))
    assert reporter.flush(5.0)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ['falcon-tracing-wsgi: zipkin to memory: sending spans works again']
    reporter.close(5.0)


def test_suppressed_warnings_are_counted_in_the_next_one(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    sender = RecordingSender([_rejected()] * 4)
    reporter = BatchReporter(sender, ENCODER, flush_interval=60, warn_interval=0.2)
    reporter.report(make_span(0))
    reporter.flush(5.0)
    deadline = time.monotonic() + 0.2
    for index in range(1, 3):  # inside the interval: held back
        reporter.report(make_span(index))
        reporter.flush(5.0)
    assert len(caplog.records) == 1
    threading.Event().wait(max(0.0, deadline - time.monotonic()))  # let the interval pass
    reporter.report(make_span(3))
    reporter.flush(5.0)
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage().endswith('(2 similar warnings suppressed)')
    reporter.close(5.0)


# -- construction ---------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs,message', [
    pytest.param({'max_queue_size': 0}, 'max_queue_size', id='queue-zero'),
    pytest.param({'max_queue_size': 2.5}, 'max_queue_size', id='queue-float'),
    pytest.param({'batch_size': 0}, 'batch_size', id='batch-zero'),
    pytest.param({'batch_size': 4096, 'max_queue_size': 2048}, 'must not exceed',
                 id='batch-over-queue'),
    pytest.param({'max_batch_bytes': 2 ** 20, 'max_queue_bytes': 2 ** 19},
                 'must not exceed', id='batch-bytes-over-queue-bytes'),
    pytest.param({'max_queue_bytes': 0}, 'max_queue_bytes', id='queue-bytes-zero'),
    pytest.param({'max_batch_bytes': 1.5}, 'max_batch_bytes', id='batch-bytes-float'),
    pytest.param({'flush_interval': 0}, 'flush_interval', id='interval-zero'),
    pytest.param({'flush_interval': float('inf')}, 'flush_interval', id='interval-inf'),
    pytest.param({'max_retries': -1}, 'max_retries', id='retries-negative'),
    pytest.param({'max_retries': True}, 'max_retries', id='retries-bool'),
    pytest.param({'retry_backoff': -0.1}, 'retry_backoff', id='backoff-negative'),
    pytest.param({'shutdown_timeout': -1}, 'shutdown_timeout', id='shutdown-negative'),
    pytest.param({'warn_interval': '30'}, 'warn_interval', id='warn-string'),
])
def test_options_are_validated_with_a_named_message(kwargs: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchReporter(RecordingSender(), ENCODER, **kwargs)


def test_collaborators_are_checked() -> None:
    with pytest.raises(TypeError, match='sender'):
        BatchReporter(object(), ENCODER)
    with pytest.raises(TypeError, match='encoder'):
        BatchReporter(RecordingSender(), object())


def test_a_dropped_reporter_can_be_garbage_collected() -> None:
    reporter = BatchReporter(RecordingSender(), ENCODER, flush_interval=60)
    reporter.report(make_span(0))  # a worker thread, an atexit hook, an at-fork hook
    ref = weakref.ref(reporter)
    del reporter
    gc.collect()
    assert ref() is None


def test_noop_reporter_keeps_nothing() -> None:
    reporter = NoopReporter()
    reporter.report(make_span(0))
    assert reporter.flush(0.0) and reporter.close(0.0)
    assert counters(reporter) == {'queued': 0, 'sent': 0, 'dropped': 0, 'failed': 0}


# -- fork -----------------------------------------------------------------------------------

@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # 3.12+: fork with threads
def test_a_forked_child_reports_its_own_spans_and_not_the_parents(
        collector: ZipkinCollector) -> None:
    reporter = BatchReporter(HttpSender(collector.url), ENCODER, flush_interval=60,
                             batch_size=100)
    for index in range(3):
        reporter.report(make_span(index))  # queued in the parent, not sent yet

    def child() -> dict[str, Any]:
        inherited = counters(reporter)
        for index in range(100, 104):
            reporter.report(make_span(index))
        return {'inherited': inherited, 'flushed': reporter.flush(5.0),
                'stats': counters(reporter), 'workers': len(_reporter_threads())}

    result = run_in_child(child)
    assert result['inherited'] == {'queued': 0, 'sent': 0, 'dropped': 0, 'failed': 0}
    assert result['flushed'] is True
    assert result['stats'] == {'queued': 0, 'sent': 4, 'dropped': 0, 'failed': 0}
    assert result['workers'] == 1  # the child started its own worker
    assert counters(reporter) == {'queued': 3, 'sent': 0, 'dropped': 0, 'failed': 0}
    assert reporter.flush(5.0)
    ids = sorted(span['id'] for span in collector.spans())
    assert ids == sorted([f'{i + 1:016x}' for i in range(3)]
                         + [f'{i + 1:016x}' for i in range(100, 104)])
    reporter.close(5.0)


class _ParentBlockingSender:
    """Blocks in the parent until released; sends for real in any process."""

    frame = staticmethod(frame_json_array)

    def __init__(self, url: str) -> None:
        self.url = url
        self.parent = os.getpid()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.http: Optional[HttpSender] = None

    def send(self, body: bytes, span_count: int, timeout: Optional[float] = None) -> None:
        if os.getpid() == self.parent:
            self.entered.set()
            assert self.gate.wait(10.0)
        if self.http is None:
            self.http = HttpSender(self.url)
        self.http.send(body, span_count, timeout)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_a_fork_while_the_worker_holds_the_send_lock_does_not_deadlock_the_child(
        collector: ZipkinCollector) -> None:
    sender = _ParentBlockingSender(collector.url)
    reporter = BatchReporter(sender, ENCODER, batch_size=2, flush_interval=60)
    reporter.report(make_span(0))
    reporter.report(make_span(1))
    assert sender.entered.wait(5.0)  # the parent's worker is inside send()

    def child() -> dict[str, Any]:
        for index in range(10, 13):
            reporter.report(make_span(index))
        start = time.monotonic()
        flushed = reporter.flush(5.0)
        return {'flushed': flushed, 'elapsed': time.monotonic() - start,
                'stats': counters(reporter)}

    result = run_in_child(child)
    sender.gate.set()
    assert result['flushed'] is True and result['elapsed'] < 2.0
    assert result['stats'] == {'queued': 0, 'sent': 3, 'dropped': 0, 'failed': 0}
    assert reporter.flush(5.0)
    assert sorted(span['id'] for span in collector.spans()) == [
        '0000000000000001', '0000000000000002', '000000000000000b', '000000000000000c',
        '000000000000000d']
    reporter.close(5.0)


def test_state_inherited_without_the_at_fork_hook_is_reset_at_the_next_batch() -> None:
    """A child forked without Python's at-fork hooks (a C-level fork) holds the parent's
    pid, queue and worker; report() notices at the next batch and starts afresh."""
    sender = RecordingSender()
    reporter = BatchReporter(sender, ENCODER, batch_size=4, flush_interval=60)
    reporter.report(make_span(0))
    stale_wake = reporter._wake
    reporter._pid += 1  # as if this process were a child that inherited the state
    for index in range(1, 4):
        reporter.report(make_span(index))  # the 4th queued span fills a batch
    stale_wake.set()  # let the "parent's" worker see it was replaced and exit
    assert reporter._wake is not stale_wake
    assert counters(reporter) == {'queued': 0, 'sent': 0, 'dropped': 0, 'failed': 0}
    reporter.report(make_span(10))
    assert reporter.flush(5.0)
    assert counters(reporter) == {'queued': 0, 'sent': 1, 'dropped': 0, 'failed': 0}
    reporter.close(5.0)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_fork_after_a_reporter_was_collected_is_fine() -> None:
    reporter = BatchReporter(RecordingSender(), ENCODER, flush_interval=60)
    reporter.report(make_span(0))
    reporter.close(5.0)
    del reporter
    gc.collect()
    assert run_in_child(lambda: 'alive') == 'alive'


# -- interpreter exit -----------------------------------------------------------------------

_EXIT_SCRIPT = textwrap.dedent('''
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(levelname)s %(name)s %(message)s')
    from falcon_tracing_wsgi.tracer.context import SpanContext
    from falcon_tracing_wsgi.zipkin import (BatchReporter, Endpoint, HttpSender,
                                            JsonV2Encoder, ZipkinCollector)

    class Span:
        def __init__(self, index):
            self.context = SpanContext('5af7183fb1d4cf5f', '%016x' % (index + 1), None, True)
            self.operation_name, self.start_time, self.duration = 'exit', 1.7e9, 0.001
            self.tags, self.logs = {}, None

    jsonl, mode = sys.argv[1], sys.argv[2]
    collector = ZipkinCollector(jsonl=jsonl).start()
    print('COLLECTOR', collector.url, file=sys.stderr)
    if mode == 'hang':
        collector.set_fault(hang=True)
    reporter = BatchReporter(HttpSender(collector.url, read_timeout=30.0),
                             JsonV2Encoder(Endpoint('exit-test')), flush_interval=60,
                             shutdown_timeout=0.5)
    if mode != 'unused':
        for index in range(5):
            reporter.report(Span(index))
    # no flush, no close: the atexit hook must deliver and summarise
''')


def collector_url(log: str) -> str:
    """The URL the exit script's collector printed."""
    return log.split('COLLECTOR ', 1)[1].split()[0]


def test_close_logs_one_summary_line(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    reporter = BatchReporter(RecordingSender([_rejected()]), ENCODER, flush_interval=60)
    for index in range(3):
        reporter.report(make_span(index))
    assert reporter.flush(5.0) is False
    reporter.report(make_span(3))
    reporter.close(5.0)
    reporter.close(5.0)
    reporter.report(make_span(4))
    reporter.close(5.0)
    summaries = [r for r in caplog.records if 'closed' in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in summaries] == [
        (logging.WARNING, 'falcon-tracing-wsgi: closed zipkin to memory: 1 span sent, '
                          '0 dropped, 3 failed')]


@pytest.mark.parametrize('mode,level,summary,lines', [
    pytest.param('ok', 'INFO', '5 spans sent, 0 dropped, 0 failed', 5, id='ok'),
    pytest.param('hang', 'WARNING', '0 spans sent, 0 dropped, 5 failed', 0,
                 id='hanging-collector'),
    pytest.param('unused', None, None, 0, id='never-used'),
])
def test_exit_flushes_within_the_deadline_and_logs_one_summary(
        tmp_path: Any, mode: str, level: Optional[str], summary: Optional[str],
        lines: int) -> None:
    jsonl = tmp_path / 'spans.jsonl'
    start = time.monotonic()
    done = subprocess.run([sys.executable, '-c', _EXIT_SCRIPT, str(jsonl), mode],
                          capture_output=True, text=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__)))))
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    summaries = [line for line in done.stderr.splitlines() if ' closed ' in line]
    if summary is None:
        assert summaries == []
    else:
        assert summaries == [f'{level} {LOGGER} falcon-tracing-wsgi: closed zipkin to '
                             f'{collector_url(done.stderr)}: {summary}']
    written = jsonl.read_text().splitlines() if jsonl.exists() else []
    assert len(written) == lines
    assert elapsed < 10.0  # the hanging collector does not hold the exit


@pytest.mark.parametrize('sizes', [(5000, 4200, 800), (300, 300), (10, 3, 7),
                                   (1000, 1, 255, 256, 300, 188)])
def test_the_encoded_queue_length_read_without_the_lock_is_never_a_mix(sizes) -> None:
    """``report()`` reads the encoded queue's length without the lock. A reader that runs
    between the steps of a take (a chunk taken or cut, the count not updated yet) must
    see the length before or after the take, never a negative or made-up one (``len()``
    raised ValueError on a request thread under load)."""
    from collections import deque

    from falcon_tracing_wsgi.export.pipeline import _PieceQueue
    queue = _PieceQueue()
    seen: list[int] = []

    class Probe(deque):  # runs a lock-free reader between the queue's own steps
        def popleft(self) -> Any:
            item = super().popleft()
            seen.append(len(queue))
            return item

        def __setitem__(self, index: Any, value: Any) -> None:
            super().__setitem__(index, value)
            seen.append(len(queue))

    queue._chunks = Probe()
    total, *takes = sizes
    for start in range(0, total, 256):  # chunks as the encoder makes them
        count = min(256, total - start)
        queue.extend(['{}'] * count, 2 * count)
    left = total
    for count in takes:
        seen.clear()
        batch = queue.take(count, 1 << 30)
        assert len(batch) == count and seen
        assert all(value in (left, left - count) for value in seen), seen
        left -= count
        assert len(queue) == left and queue.bytes == 2 * left


@pytest.mark.parametrize('sizes, cap, budget, expected', [
    # (piece sizes per chunk, cap, budget) -> pieces taken; 8 bytes of framing each
    pytest.param([[10] * 4, [10] * 4], 100, 1000, 8, id='everything-fits'),
    pytest.param([[10] * 4, [10] * 4], 6, 1000, 6, id='cap-inside-a-chunk'),
    pytest.param([[10] * 4, [10] * 4], 4, 1000, 4, id='cap-at-a-chunk-edge'),
    pytest.param([[10] * 4, [10] * 4], 100, 5 * 18, 5, id='budget-inside-a-chunk'),
    pytest.param([[10] * 4, [10] * 4], 100, 5 * 18 - 1, 4, id='framing-counted'),
    pytest.param([[500], [10]], 100, 100, 1, id='a-large-piece-alone'),
    pytest.param([[10], [500], [10]], 100, 100, 1, id='a-large-piece-waits-its-turn'),
])
def test_a_take_stops_at_the_cap_or_the_budget(sizes, cap, budget, expected) -> None:
    from falcon_tracing_wsgi.export.pipeline import _PieceQueue
    queue = _PieceQueue()
    pieces = []
    for chunk in sizes:
        made = [f'{len(pieces) + index:0{size}d}' for index, size in enumerate(chunk)]
        pieces += made
        queue.extend(list(made), sum(chunk))
    taken = []
    while len(queue):
        batch = queue.take(cap, budget)
        assert batch  # a take always makes progress
        taken.append(batch)
        assert queue.bytes == sum(map(len, pieces)) - sum(len(p) for b in taken for p in b)
    assert len(taken[0]) == expected
    assert [piece for batch in taken for piece in batch] == pieces  # in order, once each


@pytest.mark.parametrize('piece_bytes, yields', [(10_000, True), (100, False)])
def test_a_helping_thread_yields_to_the_worker_once_encoded_spans_pile_up(
        monkeypatch, piece_bytes, yields) -> None:
    """When the worker is stuck (here: its send blocked) and a reporting thread has
    encoded a quarter of the byte bound, the thread hands over the interpreter (a zero
    sleep) rather than go on until spans are dropped; below that it never does."""
    from falcon_tracing_wsgi.export import pipeline
    sleeps: list[tuple[float, int]] = []
    sender = GateSender()

    class Encoder:
        def encode(self, span: Any) -> str:
            return '{"x":"' + 'x' * (piece_bytes - 8) + '"}'

    reporter = BatchReporter(sender, Encoder(), max_queue_size=100, batch_size=5,
                             max_queue_bytes=1_000_000, max_batch_bytes=100_000,
                             flush_interval=60)
    monkeypatch.setattr(pipeline, '_sleep',
                        lambda seconds: sleeps.append((seconds, reporter._encoded.bytes)))
    reporter.report(make_span(0))
    for index in range(1, 5):
        reporter.report(make_span(index))
    assert sender.entered.wait(5.0)  # the worker is stuck in a send
    for index in range(5, 100):
        reporter.report(make_span(index))
    try:
        assert bool(sleeps) is yields
        assert all(seconds == 0 and waiting >= 250_000 for seconds, waiting in sleeps)
    finally:
        sender.gate.set()
        reporter.close(5.0)
    assert _total(reporter.stats()) == 100


# -- large bodies from reused storage (borrows_body, frame_into) -----------------------------

#: Spans per flushed batch: more than one framing chunk, so the body is a large one.
LARGE = 300


class BorrowingSender:
    """No framing of its own; reads each body during send() only (``borrows``)."""

    destination = 'memory'

    def __init__(self, borrows: bool = True, too_large_above: Optional[int] = None) -> None:
        if borrows:
            self.borrows_body = True
        self.too_large_above = too_large_above
        self.kinds: list[type] = []
        self.ids: list[str] = []

    def send(self, body: Any, span_count: int, timeout: Optional[float] = None) -> None:
        if self.too_large_above is not None and span_count > self.too_large_above:
            raise SendError('HTTP 413', retryable=False, too_large=True)
        self.kinds.append(type(body))
        batch = json.loads(bytes(body))  # read now: the next batch may overwrite it
        assert len(batch) == span_count
        self.ids += [span['id'] for span in batch]

    def close(self) -> None:
        pass


class FramingOnlyEncoder:
    """A format with its own ``frame`` and no ``frame_into``."""

    encode = staticmethod(ENCODER.encode)
    frame = staticmethod(frame_json_array)


def _report_and_flush(reporter: BatchReporter, count: int, first: int = 0) -> None:
    for index in range(first, first + count):
        reporter.report(make_span(index))
    assert reporter.flush(10.0)


@pytest.mark.parametrize('sender,encoder,kind', [
    pytest.param(BorrowingSender(), ENCODER, memoryview, id='borrower-zipkin'),
    pytest.param(BorrowingSender(), ENCODER.encode, memoryview,
                 id='borrower-default-framing'),
    pytest.param(BorrowingSender(borrows=False), ENCODER, bytes, id='not-a-borrower'),
    pytest.param(BorrowingSender(), FramingOnlyEncoder(), bytes, id='format-without-frame-into'),
    pytest.param(RecordingSender(), ENCODER, bytes, id='transport-framing'),
])
def test_only_a_sender_that_borrows_the_body_gets_the_reused_storage(sender, encoder, kind):
    reporter = BatchReporter(sender, encoder, flush_interval=60)
    _report_and_flush(reporter, LARGE)
    received = sender.ids() if isinstance(sender, RecordingSender) else sender.ids
    assert sorted(received) == [f'{index + 1:016x}' for index in range(LARGE)]
    if isinstance(sender, BorrowingSender):
        assert sender.kinds == [kind]
    assert (reporter.stats()['body_bytes'] > 0) is (kind is memoryview)
    assert reporter.close(5.0)
    assert reporter.stats()['body_bytes'] == 0


@pytest.mark.parametrize('gzip', [False, True], ids=['plain', 'gzip'])
def test_large_batches_are_posted_from_one_reused_storage_over_http(
        collector: ZipkinCollector, gzip: bool) -> None:
    reporter = BatchReporter(HttpSender(collector.url, gzip=gzip), ENCODER,
                             flush_interval=60)
    held = set()
    for round_ in range(3):
        _report_and_flush(reporter, LARGE, round_ * LARGE)
        held.add(reporter.stats()['body_bytes'])
    assert collector.wait_for_spans(3 * LARGE, 5.0)
    assert sorted(span['id'] for span in collector.spans()) == [
        f'{index + 1:016x}' for index in range(3 * LARGE)]  # each once, each whole
    assert len(held) == 1 and held.pop() > 0  # one storage, kept for the three
    # A round with nothing to send: the load is gone, and the storage with it.
    assert reporter.flush(5.0)
    assert reporter.stats()['body_bytes'] == 0
    assert reporter.close(5.0)


def test_halves_of_a_batch_refused_as_too_large_reuse_the_storage_and_all_arrive() -> None:
    # Each half is framed into the storage while the refused whole body is still
    # referenced by the frame that sent it: every span must still arrive once.
    sender = BorrowingSender(too_large_above=LARGE)
    reporter = BatchReporter(sender, ENCODER, flush_interval=60)
    _report_and_flush(reporter, 2 * LARGE)
    assert sorted(sender.ids) == [f'{index + 1:016x}' for index in range(2 * LARGE)]
    assert sender.kinds == [memoryview, memoryview]  # both halves, from the storage
    assert counters(reporter) == {'queued': 0, 'sent': 2 * LARGE, 'dropped': 0, 'failed': 0}
    assert reporter.close(5.0)


def test_a_forked_child_holds_no_body_storage_of_its_parent() -> None:
    sender = BorrowingSender()
    reporter = BatchReporter(sender, ENCODER, flush_interval=60)
    _report_and_flush(reporter, LARGE)
    assert reporter.stats()['body_bytes'] > 0

    def child() -> dict[str, int]:
        return reporter.stats()

    assert run_in_child(child)['body_bytes'] == 0
    assert reporter.stats()['body_bytes'] > 0  # the parent's is untouched
    assert reporter.close(5.0)


class KeepingStream(io.RawIOBase):
    """A binary stream without a descriptor that keeps every object it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[Any] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.given.append(data)
        return len(data)

    def text(self) -> str:
        return b''.join(bytes(data) for data in self.given).decode()


@pytest.mark.parametrize('destination', ['path', 'text-stream', 'keeping-binary-stream'])
def test_the_file_transport_writes_large_batches_from_reused_storage(
        destination: str, tmp_path: Any) -> None:
    from falcon_tracing_wsgi.export.file import FileSender
    path = tmp_path / 'spans.jsonl'
    stream: Any = {'path': None, 'text-stream': io.StringIO(),
                   'keeping-binary-stream': KeepingStream()}[destination]
    reporter = BatchReporter(FileSender(path if stream is None else stream), ENCODER,
                             flush_interval=60)
    for round_ in range(3):
        _report_and_flush(reporter, LARGE, round_ * LARGE)
        assert reporter.stats()['body_bytes'] > 0
    assert reporter.close(5.0)
    text = path.read_text() if stream is None else (
        stream.getvalue() if isinstance(stream, io.StringIO) else stream.text())
    # Every batch whole and in order, though each was written from the same storage
    # (a stream that keeps what it is given got copies).
    assert [json.loads(line)['id'] for line in text.splitlines()] == [
        f'{index + 1:016x}' for index in range(3 * LARGE)]
