"""A destination that stops taking data, and a fork while a lock is held (issue 11, 5-6).

Every deadline must hold whatever the destination does: a full pipe on stderr, a stalled
log driver, a name lookup that hangs. And a fork at any moment must leave the child with
no lock held by a thread it does not have.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable, Optional

import pytest

from falcon_tracing_wsgi.export.file import FileSender
from falcon_tracing_wsgi.export.pipeline import BatchReporter
from falcon_tracing_wsgi.export.udp import UdpSender
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
from falcon_tracing_wsgi.tracer.sampler import ConstSampler, RateLimitingSampler

from tests.forks import run_in_child
from tests.spans import make_span

ENCODER = JsonV2Encoder(Endpoint('stall-test'))
MARGIN = 0.6  # seconds of slack on timing assertions (scheduling on a loaded machine)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: A span of ~4 KB: 16 of them fill a pipe's 64 KiB buffer.
BIG_TAGS = {'span.kind': 'server', 'payload': 'x' * 4000}


def _in_thread(call: Callable[[], Any], limit: float) -> tuple[Optional[Any], float]:
    """Run ``call`` on a daemon thread; (its result or None if still running, seconds)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    return (result[0] if result else None), time.monotonic() - start


@pytest.fixture
def full_pipe() -> Any:
    """A binary stream on a pipe that nobody reads (it fills after 64 KiB)."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, 'wb')
    yield stream
    os.close(read_end)  # a write still waiting for room now fails at once (EPIPE) ...
    for thread in threading.enumerate():  # ... and its thread ends
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(5.0)
    stream.close()  # only then: the descriptor's number must not be reused under a writer


# -- issue 11 item 5: a blocked log destination -----------------------------------------------

@pytest.mark.parametrize('closer', [
    pytest.param(lambda reporter: reporter.close(0.5), id='close'),
    pytest.param(lambda reporter: reporter.flush(0.5), id='flush'),
])
def test_a_full_pipe_does_not_hold_a_deadline(full_pipe: Any, closer: Any) -> None:
    reporter = BatchReporter(FileSender(full_pipe), ENCODER, flush_interval=60)
    for index in range(64):  # 256 KB: four times what the pipe holds
        reporter.report(make_span(index, tags=BIG_TAGS))
    returned, elapsed = _in_thread(lambda: closer(reporter), 10.0)
    assert returned is False  # it could not send everything, and said so
    assert elapsed < 0.5 + MARGIN
    reporter.close(0.5)
    stats = reporter.stats()
    assert stats['queued'] + stats['dropped'] + stats['failed'] == 64
    assert stats['sent'] == 0


def test_the_worker_blocked_on_a_full_pipe_does_not_hold_close(full_pipe: Any) -> None:
    """The worker is the one stuck writing; close() must not wait for its lock."""
    sender = FileSender(full_pipe, timeout=30.0)
    reporter = BatchReporter(sender, ENCODER, flush_interval=0.05)
    for index in range(64):
        reporter.report(make_span(index, tags=BIG_TAGS))
    deadline = time.monotonic() + 5.0
    while reporter.stats()['queued'] == 64 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling with a deadline: until the worker took a batch
    returned, elapsed = _in_thread(lambda: reporter.close(0.3), 10.0)
    assert returned is False
    assert elapsed < 0.3 + MARGIN


def test_file_sender_close_never_waits_for_a_blocked_write(full_pipe: Any) -> None:
    sender = FileSender(full_pipe, timeout=30.0)
    writing = threading.Thread(target=lambda: _swallow(sender.send, b'x' * 200_000, 1),
                               daemon=True)
    writing.start()
    deadline = time.monotonic() + 5.0
    while not sender._lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    _, elapsed = _in_thread(sender.close, 5.0)
    assert elapsed < MARGIN


def _swallow(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except Exception:
        pass


def test_a_write_that_ran_out_of_time_is_retryable_only_if_nothing_went_out(
        full_pipe: Any) -> None:
    from falcon_tracing_wsgi._types import SendError
    sender = FileSender(full_pipe, timeout=0.2)
    with pytest.raises(SendError) as partly:
        sender.send(b'y' * 100_000 + b'\n', 1)  # 64 KiB go out, then the pipe is full
    assert partly.value.retryable is False
    with pytest.raises(SendError) as nothing:
        sender.send(b'z\n', 1)
    assert nothing.value.retryable is True


_EXIT_SCRIPT = textwrap.dedent('''
    import logging, sys
    logging.basicConfig(filename=sys.argv[1], level=logging.INFO,
                        format='%(levelname)s %(message)s')
    from falcon_tracing_wsgi.export.file import FileSender
    from falcon_tracing_wsgi.export.pipeline import BatchReporter
    from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
    from tests.spans import make_span

    reporter = BatchReporter(FileSender(), JsonV2Encoder(Endpoint('exit')),
                             flush_interval=0.05, shutdown_timeout=0.5)
    for index in range(200):
        reporter.report(make_span(index, tags={'payload': 'x' * 4000}))
    # no close(): the exit hook must keep its deadline although stderr is full
''')


def test_the_exit_hook_keeps_its_deadline_when_stderr_is_full(tmp_path: Any) -> None:
    log = tmp_path / 'log.txt'
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, '-c', _EXIT_SCRIPT, str(log)], cwd=REPO,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # never read: it fills up
    try:
        code = child.wait(timeout=20)
    finally:
        child.kill()
        child.wait()
        assert child.stderr is not None
        child.stderr.close()
    assert code == 0
    assert time.monotonic() - start < 15
    assert 'unsent' in log.read_text() or 'failed' in log.read_text()


# -- issue 11 item 6: a fork while a lock is held ---------------------------------------------

class _GateStream:
    """A stream whose writes block in the process that made it, until released."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        if os.getpid() == self.parent:
            self.entered.set()
            assert self.gate.wait(10.0)
        self.lines.extend(text.splitlines())
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # 3.12+: fork with threads
def test_a_fork_during_a_write_leaves_the_child_a_working_log_reporter() -> None:
    stream = _GateStream()
    reporter = BatchReporter(FileSender(stream), ENCODER, flush_interval=0.01)
    reporter.report(make_span(0))
    assert stream.entered.wait(5.0)  # the parent's worker is inside write()

    def child() -> dict[str, Any]:
        reporter.report(make_span(1))
        flushed = reporter.flush(2.0)
        start = time.monotonic()
        closed = reporter.close(2.0)
        return {'flushed': flushed, 'closed': closed, 'elapsed': time.monotonic() - start,
                'ids': [json.loads(line)['id'] for line in stream.lines]}

    try:
        result = run_in_child(child)
    finally:
        stream.gate.set()
    assert result['flushed'] is True and result['closed'] is True
    assert result['elapsed'] < 2.0
    assert result['ids'] == ['0000000000000002']  # the child's span, not the parent's
    assert reporter.close(5.0)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_a_fork_while_the_sampler_holds_its_lock_leaves_the_child_sampling() -> None:
    entered, gate = threading.Event(), threading.Event()
    parent = os.getpid()

    def clock() -> float:  # called with the sampler's lock held
        if os.getpid() == parent and threading.current_thread().name == 'blocked':
            entered.set()
            gate.wait(10.0)
        return time.monotonic()

    sampler = RateLimitingSampler(ConstSampler(True), 1000.0, clock=clock)
    blocked = threading.Thread(target=sampler.is_sampled, args=('a' * 32, 'op'),
                               name='blocked', daemon=True)
    blocked.start()
    assert entered.wait(5.0)
    try:
        assert run_in_child(lambda: sampler.is_sampled('b' * 32, 'op')) is True
    finally:
        gate.set()
        blocked.join(5.0)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_a_fork_during_a_slow_name_lookup_leaves_the_child_a_working_udp_sender(
        monkeypatch: Any) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(('127.0.0.1', 0))
    receiver.settimeout(5.0)
    port = receiver.getsockname()[1]
    parent = os.getpid()
    entered, gate = threading.Event(), threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def slow_getaddrinfo(*args: Any, **kwargs: Any) -> Any:  # a resolver that hangs
        if os.getpid() == parent:
            entered.set()
            gate.wait(10.0)
        return real_getaddrinfo(*args, **kwargs)

    monkeypatch.setattr(socket, 'getaddrinfo', slow_getaddrinfo)
    sender = UdpSender(f'127.0.0.1:{port}')
    resolving = threading.Thread(target=_swallow, args=(sender.send, b'{}', 1), daemon=True)
    resolving.start()
    try:
        assert entered.wait(5.0)
        _, elapsed = _in_thread(sender.close, 5.0)  # close() does not wait for the lookup
        assert elapsed < MARGIN

        def child() -> bool:
            sender.send(b'{"child":1}', 1, timeout=2.0)
            return True

        assert run_in_child(child) is True
        assert receiver.recv(1024) == b'{"child":1}'
    finally:
        gate.set()
        resolving.join(5.0)
        receiver.close()
