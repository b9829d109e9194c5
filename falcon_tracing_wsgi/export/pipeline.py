"""Reporters: take finished spans off the request thread and send them in batches.

:class:`BatchReporter` is the production reporter. Its design follows the OpenTelemetry
SDK's batch processor where that one is good, and differs where it is not:

* **The request thread only appends.** :meth:`BatchReporter.report` puts the span on a
  ``collections.deque`` (atomic under the GIL, no lock) and, once a full batch is
  waiting, sets an :class:`threading.Event` to wake the worker. Encoding happens on the
  worker, in batches.
* **Bounded, with counted drops.** When ``max_queue_size`` spans are waiting, new spans
  are dropped and *counted*; nothing is logged per span. (Concurrent reporters can
  overshoot the bound by at most one span per thread: the length check and the append
  are not one atomic step, and making them one would put a lock on every request.)
* **Lazy, fork-safe worker.** No thread exists until the first :meth:`report` in the
  current process. ``os.register_at_fork(after_in_child=...)`` (through a weak
  reference, so the registry cannot keep a reporter alive) gives a forked child fresh
  locks, an empty queue, zeroed counters and no worker; the child's first report starts
  its own worker. :meth:`report` also compares the pid, a second guard for forks that
  skip the at-fork hooks. The child never sends the parent's queued spans (the parent
  does), and never waits on a lock some parent thread held when it forked.
* **Every span is accounted for.** :meth:`BatchReporter.stats` returns ``queued``,
  ``sent``, ``dropped`` and ``failed``, and every span handed to :meth:`report` in this
  process is in exactly one of them, so their sum is the number of spans reported:

  ``queued``
      waiting in the queue, or in a batch being sent right now.
  ``sent``
      accepted by the sender (the collector answered 2xx, or the file write succeeded).
  ``dropped``
      never sent, for lack of room or time: the queue was full, the reporter was
      already closed, or :meth:`close` reached its deadline with the span still queued.
  ``failed``
      sending was attempted and gave up: the collector rejected the batch (4xx), the
      retries ran out (timeouts, connection errors, 5xx), or the span could not be
      encoded (a span that breaks the Span contract).

* **Batches by size and time.** The worker wakes when ``batch_size`` spans are waiting
  or every ``flush_interval`` seconds, and sends everything queued, in batches of at
  most ``batch_size``. Only one thread sends at a time, so spans leave in order.
* **Retries are bounded**: at most ``max_retries`` more attempts on retryable errors,
  with exponential backoff and full jitter (a uniform wait in
  ``[0, retry_backoff * 2**n]``), so that many processes do not retry in step. When the
  collector said how long to wait (``SendError.retry_after``, from ``Retry-After``),
  that wait replaces the backoff, within the deadline. A partial success (the sender
  returns :class:`~falcon_tracing_wsgi._types.PartialSuccess`) is not retried: its
  rejected spans count as ``failed``.
* **Deadlines are kept.** :meth:`flush` and :meth:`close` take a timeout and return
  within it; the time left is passed down as the sender's timeout and caps the backoff
  waits. When a flush runs out of time, the batch in hand goes back to the head of the
  queue (unless its retries had run out), so a short ``flush(timeout)`` loses nothing.
* **Quiet failure.** While the collector keeps failing, at most one warning is logged
  per ``warn_interval`` (30 s), counting the suppressed ones; one line says when
  sending works again. Closing logs **one** summary line (sent, dropped, failed,
  unsent). At interpreter exit an ``atexit`` hook closes a reporter the application did
  not close, within ``shutdown_timeout``.
* The reporter's own HTTP calls are never traced: :class:`~.http.HttpSender` uses
  :mod:`http.client` directly and sends ``b3: 0``.

:class:`NoopReporter` is the reporter for ``none``: it keeps nothing.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import random
import threading
import weakref
from collections import deque
from time import monotonic as _monotonic
from typing import Any, Callable, Optional

__all__ = ['BatchReporter', 'NoopReporter']

_log = logging.getLogger(__name__)
_getpid = os.getpid
_THREAD_NAME = 'falcon-tracing-wsgi-zipkin-reporter'
_ABORT_GRACE = 0.1  # seconds close() waits for an aborted send to settle its batch


class _WarningGate:
    """Logs at most one warning per interval, counting the ones it holds back."""

    __slots__ = ('interval', '_next', '_suppressed', 'failing')

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0
        self.failing = False

    def warn(self, message: str, *args: Any, exc_info: bool = False,
             outage: bool = True) -> None:
        if outage:  # the destination failed (not a bad span): say when it works again
            self.failing = True
        now = _monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += ' (%d similar warnings suppressed)'
            args += (self._suppressed,)
        _log.warning(message, *args, exc_info=exc_info)
        self._next = now + self.interval
        self._suppressed = 0

    def recovered(self) -> None:
        if self.failing:
            self.failing = False
            _log.info('zipkin reporter: sending spans works again')


def _positive(name: str, value: Any, integer: bool = False, zero: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kinds) and (
        value >= 0 if zero else value > 0) and value < float('inf')
    if not ok:
        what = 'an int' if integer else 'a number'
        bound = '>= 0' if zero else '> 0'
        raise ValueError(f'BatchReporter {name} must be {what} {bound}, got {value!r}')


def _accepts_timeout(send: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(send).parameters
    except (TypeError, ValueError):
        return False
    return 'timeout' in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _call_weak(method: weakref.WeakMethod) -> None:  # type: ignore[type-arg]
    bound = method()
    if bound is not None:
        bound()


class BatchReporter:
    """Queues finished spans and sends them in batches from a background thread.

    Args:
        sender: where batches go (:class:`~.http.HttpSender`, :class:`~.file.FileSender`
            or anything with ``send(body, span_count)``, ``close()`` and optionally
            ``frame(encoded)`` and a ``timeout`` keyword on ``send``).
        encoder: turns a span into JSON text (:class:`~.zipkin.JsonV2Encoder`); an
            object with ``encode(span)`` or a callable.
        max_queue_size: spans that may wait; more are dropped (and counted).
        batch_size: the most spans per send; a full batch wakes the worker at once.
        flush_interval: seconds between sends of a batch that is not full.
        max_retries: further attempts after a retryable failure (0: no retries).
        retry_backoff: the first backoff's upper bound in seconds; doubles per retry.
        shutdown_timeout: seconds the ``atexit`` hook (and ``close()`` without a
            timeout) may take.
        warn_interval: seconds between two warnings about failed sends.

    Raises:
        ValueError: an option is out of range; the message names it.
    """

    def __init__(self, sender: Any, encoder: Any, *, max_queue_size: int = 2048,
                 batch_size: int = 256, flush_interval: float = 1.0, max_retries: int = 2,
                 retry_backoff: float = 0.1, shutdown_timeout: float = 5.0,
                 warn_interval: float = 30.0) -> None:
        _positive('max_queue_size', max_queue_size, integer=True)
        _positive('batch_size', batch_size, integer=True)
        if batch_size > max_queue_size:
            raise ValueError(f'BatchReporter batch_size ({batch_size}) must not exceed '
                             f'max_queue_size ({max_queue_size})')
        _positive('flush_interval', flush_interval)
        _positive('max_retries', max_retries, integer=True, zero=True)
        _positive('retry_backoff', retry_backoff, zero=True)
        _positive('shutdown_timeout', shutdown_timeout, zero=True)
        _positive('warn_interval', warn_interval, zero=True)
        encode = getattr(encoder, 'encode', encoder)
        if not callable(encode) or not callable(getattr(sender, 'send', None)):
            raise TypeError('BatchReporter needs a sender with send() and an encoder with '
                            'encode()')
        self._sender = sender
        self._encode = encode
        self._frame = getattr(sender, 'frame', None) or _frame_json_array
        self._send_with_timeout = _accepts_timeout(sender.send)
        self.max_queue_size = max_queue_size
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_retries = max_retries
        self.retry_backoff = float(retry_backoff)
        self.shutdown_timeout = float(shutdown_timeout)
        self._warnings = _WarningGate(float(warn_interval))
        self._queue: deque[Any] = deque()
        # PERF: report() compares against _capacity only; close() sets it to 0 so that a
        # closed reporter needs no extra test on the hot path.
        self._capacity = max_queue_size
        self._wake_at = batch_size - 1  # queue length before an append that fills a batch
        self._closed = False
        self._close_deadline: Optional[float] = None
        self._atexit_registered = False
        self._reset_process_state()
        os.register_at_fork(after_in_child=functools.partial(
            _call_weak, weakref.WeakMethod(self._after_fork_in_child)))

    # -- state that belongs to one process ------------------------------------------------

    def _reset_process_state(self) -> None:
        """Fresh locks, events, counters and no worker (at construction and in a child)."""
        self._lock = threading.Lock()        # counters, popping and starting the worker
        self._send_lock = threading.Lock()   # one sender of batches at a time
        self._wake = threading.Event()       # a full batch waits, or a flush/close came
        self._interrupt = threading.Event()  # close() cuts a retry backoff short
        self._queue.clear()
        self._in_flight = 0
        self._sent = 0
        self._dropped = 0
        self._failed = 0
        self._thread: Optional[threading.Thread] = None
        self._pid = 0  # the process whose worker is running; 0 means none started

    def _after_fork_in_child(self) -> None:
        self._reset_process_state()
        self._warnings = _WarningGate(self._warnings.interval)

    def _check_fork(self) -> None:
        pid = self._pid
        if pid and pid != _getpid():  # forked without the at-fork hook running
            self._after_fork_in_child()

    # -- the hot path -----------------------------------------------------------------------

    def report(self, span: Any) -> None:
        """Queue a finished span; never blocks on I/O and never raises.

        Args:
            span: a finished, sampled span (the Span contract).
        """
        # PERF: this runs on the request thread for every sampled span. Normally it is
        # a test, a length test and an append (no lock); the worker is started here
        # lazily (the at-fork hook sets _pid to 0 in a child), and a full queue costs a
        # locked increment. The second fork guard, for forks that skip the at-fork
        # hooks, needs os.getpid() (a system call since glibc 2.25), so it runs once per
        # batch, when the worker is woken: such a child loses at most one batch.
        if not self._pid:
            self._start_worker()
        queue = self._queue
        waiting = len(queue)
        if waiting < self._capacity:
            queue.append(span)
            if waiting >= self._wake_at:
                if self._pid != _getpid():
                    self._start_worker()
                elif not self._wake.is_set():
                    self._wake.set()
        else:
            with self._lock:
                self._dropped += 1

    def _start_worker(self) -> None:
        self._check_fork()
        with self._lock:
            pid = _getpid()
            if self._pid == pid:
                return  # another thread started it
            self._pid = pid
            if self._closed:
                return
            thread = threading.Thread(target=_worker_main, name=_THREAD_NAME, daemon=True,
                                      args=(weakref.ref(self), self._wake,
                                            self.flush_interval))
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                _log.debug('zipkin reporter: no worker thread at interpreter shutdown')
                return
            self._thread = thread
            if not self._atexit_registered:
                self._atexit_registered = True
                atexit.register(_close_at_exit, weakref.ref(self))

    # -- sending ----------------------------------------------------------------------------

    def _deadline(self, deadline: Optional[float]) -> Optional[float]:
        closing = self._close_deadline
        if closing is None:
            return deadline
        return closing if deadline is None or closing < deadline else deadline

    def _drain(self, deadline: Optional[float], limit: Optional[int]) -> bool:
        """Send queued spans in batches; ``limit`` caps how many (None: all).

        Returns whether every batch this call took was sent. Waits for a batch another
        thread is sending, but only until ``deadline``.
        """
        ok = True
        left = limit
        while True:
            until = self._deadline(deadline)  # close() may shorten it at any time
            if until is None:
                self._send_lock.acquire()
            else:
                remaining = until - _monotonic()
                if remaining <= 0.0 or not self._send_lock.acquire(timeout=remaining):
                    return False
            try:
                with self._lock:
                    count = min(len(self._queue), self.batch_size)
                    if left is not None:
                        count = min(count, left)
                    if count <= 0:
                        return ok
                    popleft = self._queue.popleft
                    batch = [popleft() for _ in range(count)]
                    self._in_flight += count
                if left is not None:
                    left -= count
                outcome = self._send_batch(batch, deadline)
                if outcome is None:  # out of time: the batch went back to the queue
                    return False
                if not outcome:
                    ok = False
            finally:
                self._send_lock.release()

    def _requeue(self, batch: list[Any]) -> None:
        with self._lock:
            self._queue.extendleft(reversed(batch))
            self._in_flight -= len(batch)

    def _resolve(self, sent: int = 0, failed: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self._in_flight -= sent + failed + dropped
            self._sent += sent
            self._failed += failed
            self._dropped += dropped

    def _send_batch(self, batch: list[Any], deadline: Optional[float]) -> Optional[bool]:
        """Encode, frame and send one batch, retrying as configured.

        Returns True when sent, False when (some of) it failed, and None when the
        deadline came first and the batch was put back at the head of the queue.
        """
        limit = self._deadline(deadline)
        if limit is not None and limit <= _monotonic():
            # Out of time before the first attempt: hand the spans back untouched.
            self._requeue(batch)
            return None
        encoded: list[str] = []
        add = encoded.append
        encode = self._encode
        for span in batch:
            try:
                text = encode(span)
            except Exception:
                text = None
            if text is not None:
                add(text)
        bad = len(batch) - len(encoded)
        if bad:
            batch = [span for span in batch if _encodes(encode, span)]
            self._resolve(failed=bad)
            self._warnings.warn('zipkin reporter: %d spans could not be encoded and were '
                                'dropped (they break the Span contract)', bad, outage=False)
        count = len(encoded)
        if not count:
            return False
        try:
            body = self._frame(encoded)
        except Exception:
            self._resolve(failed=count)
            self._warnings.warn('zipkin reporter: framing %d spans failed', count,
                                exc_info=True, outage=False)
            return False
        attempt = 0
        while True:
            limit = self._deadline(deadline)
            try:
                if not self._send_with_timeout:
                    outcome = self._sender.send(body, count)
                else:
                    outcome = self._sender.send(body, count, timeout=None if limit is None
                                                else max(0.0, limit - _monotonic()))
            except Exception as exc:
                retryable = getattr(exc, 'retryable', None)
                if retryable is None:  # not a SendError: a bug in a custom sender
                    self._resolve(failed=count)
                    self._warnings.warn('zipkin reporter: the sender failed; %d spans lost',
                                        count, exc_info=True)
                    return False
                attempt += 1
                if not retryable:
                    self._resolve(failed=count)
                    self._warnings.warn('zipkin reporter: %d spans rejected, not retried: %s',
                                        count, exc)
                    return False
                backoff = getattr(exc, 'retry_after', None)  # the collector's Retry-After
                if backoff is None:
                    backoff = random.uniform(0.0, self.retry_backoff * 2 ** (attempt - 1))
                limit = self._deadline(deadline)
                out_of_time = limit is not None and _monotonic() + backoff >= limit
                if out_of_time and attempt <= self.max_retries and not self._closed:
                    # Only a flush's deadline ran out, not the retries: keep the spans
                    # for the worker rather than lose them to a short flush(timeout).
                    self._requeue(batch)
                    return None
                if attempt > self.max_retries or out_of_time:
                    self._resolve(failed=count)
                    self._warnings.warn('zipkin reporter: %d spans lost after %d attempts: %s',
                                        count, attempt, exc)
                    return False
                self._interrupt.wait(backoff)
                continue
            self._warnings.recovered()
            rejected = getattr(outcome, 'rejected', 0) if outcome is not None else 0
            if type(rejected) is int and rejected > 0:
                # A partial success (OTLP): never retried; the rejected spans failed.
                rejected = min(rejected, count)
                self._resolve(sent=count - rejected, failed=rejected)
                self._warnings.warn('span reporter: the collector rejected %d of %d spans '
                                    '(not retried): %s', rejected, count,
                                    getattr(outcome, 'message', '') or 'no reason given',
                                    outage=False)
                return False
            self._resolve(sent=count)
            return bad == 0

    # -- control ----------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Send everything queued now, waiting at most ``timeout`` seconds.

        Args:
            timeout: the most seconds this call may take.

        Returns:
            Whether every span queued at the call was sent (and no batch failed
            meanwhile) within the time.
        """
        self._check_fork()
        deadline = _monotonic() + max(0.0, timeout)
        with self._lock:
            failed_before = self._failed
            limit = len(self._queue)
        ok = self._drain(deadline, limit)
        with self._lock:
            return ok and self._failed == failed_before

    def close(self, timeout: Optional[float] = None) -> bool:
        """Stop taking spans, send what is queued, stop the worker and close the sender.

        Spans reported after this are dropped (and counted). Spans still queued at the
        deadline are counted as dropped. The first call logs one summary line (INFO
        when everything was sent, WARNING otherwise) if any span was reported in this
        process; calling ``close`` again is harmless and quiet. The ``atexit`` hook
        calls it with ``shutdown_timeout`` unless the application closed it first.

        Args:
            timeout: the most seconds this call may take; default ``shutdown_timeout``.
                A send still in progress at the deadline is aborted by closing the
                sender, and its batch counted as failed, which may take up to 0.1 s
                more; a sender that cannot be aborted leaves that batch ``queued``.

        Returns:
            Whether everything was sent within the time.
        """
        self._check_fork()
        deadline = _monotonic() + max(0.0, self.shutdown_timeout if timeout is None
                                      else timeout)
        with self._lock:
            first = not self._closed
            self._closed = True
            self._capacity = 0
            if self._close_deadline is None or deadline < self._close_deadline:
                self._close_deadline = deadline
        self._interrupt.set()
        self._wake.set()
        ok = self._drain(deadline, None)
        thread = self._thread
        if thread is threading.current_thread():
            thread = None  # close() called from the worker: it cannot wait for itself
        if thread is not None:
            thread.join(max(0.0, deadline - _monotonic()))
        try:
            self._sender.close()
        except Exception:
            _log.warning('zipkin reporter: closing the sender failed', exc_info=True)
        if thread is not None and thread.is_alive():
            # Closing the sender aborts a send the worker is still stuck in (a collector
            # that hangs); the worker then settles that batch as failed at once. Waiting
            # briefly for it makes the counters final when close() returns.
            thread.join(_ABORT_GRACE)
        with self._lock:
            leftover = len(self._queue)
            self._queue.clear()
            self._dropped += leftover
            done = self._in_flight == 0
        if first:
            self._log_summary()
        return ok and leftover == 0 and done

    def stats(self) -> dict[str, int]:
        """Counters for this process: ``queued``, ``sent``, ``dropped``, ``failed``.

        Their sum is the number of spans reported in this process (see the module
        documentation for what each one means). A forked child starts from zero.
        """
        with self._lock:
            return {'queued': len(self._queue) + self._in_flight, 'sent': self._sent,
                    'dropped': self._dropped, 'failed': self._failed}

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _log_summary(self) -> None:
        stats = self.stats()
        total = sum(stats.values())
        if not total:
            return
        level = logging.INFO if stats['sent'] == total else logging.WARNING
        _log.log(level, 'zipkin reporter closed: %d spans sent, %d dropped, %d failed, '
                 '%d unsent', stats['sent'], stats['dropped'], stats['failed'],
                 stats['queued'])

    def __repr__(self) -> str:
        return f'<BatchReporter {self._sender!r} {self.stats()}>'


def _encodes(encode: Callable[[Any], Optional[str]], span: Any) -> bool:
    try:
        return encode(span) is not None
    except Exception:
        return False


def _frame_json_array(encoded: list[str]) -> bytes:
    return ('[' + ','.join(encoded) + ']').encode()


def _worker_main(ref: weakref.ref[BatchReporter], wake: threading.Event,
                 interval: float) -> None:
    """The worker thread: wake on a full batch or every interval, then send."""
    while True:
        wake.wait(interval)
        reporter = ref()
        if reporter is None or reporter._wake is not wake:
            return  # the reporter is gone (or was reset)
        wake.clear()
        try:
            reporter._drain(None, None)
        except Exception:  # never let the worker die silently with spans queued
            _log.warning('zipkin reporter: unexpected error in the worker', exc_info=True)
        if reporter._closed:
            return
        del reporter


def _close_at_exit(ref: weakref.ref[BatchReporter]) -> None:
    reporter = ref()
    if reporter is not None and not reporter.closed:
        try:
            reporter.close(reporter.shutdown_timeout)
        except Exception:  # pragma: no cover - the exit must go on
            pass


class NoopReporter:
    """The reporter for ``none``: every method does nothing and succeeds."""

    __slots__ = ()

    def report(self, span: Any) -> None:
        """Discard the span."""

    def flush(self, timeout: float) -> bool:
        """Nothing to flush."""
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        """Nothing to close."""
        return True

    def stats(self) -> dict[str, int]:
        """Always zeros: nothing is kept or counted."""
        return {'queued': 0, 'sent': 0, 'dropped': 0, 'failed': 0}
