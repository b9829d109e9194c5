"""The export pipeline: take finished spans off the request thread and deliver them.

:class:`BatchReporter` is the production reporter, the same for every wire format and
transport::

    report(span) -> queue of spans -> encoder.encode(span) -> queue of encoded pieces
                 -> batches by bytes -> frame(pieces) -> sender.send(body) -> accounting

Its design follows the OpenTelemetry SDK's batch processor where that one is good, and
differs where measurements said it must.

Where the time goes (measured on main, issue 12; ``benchmarks/bench_delivery.py``)
------------------------------------------------------------------------------------

With 4 request threads that never release the GIL, the old reporter delivered 37 % of
the spans (27 % with 30 child spans per request). Timing the reporter thread showed why:
a batch of 256 spans cost it ~3 ms of CPU (encoding ~2 ms, the POST ~1 ms) but ~100 ms
of wall time, ~96 ms of which inside the POST. Each blocking call of a POST (the
keep-alive check, sending the headers, the body, reading the answer) releases the GIL;
getting it back takes a switch interval (5 ms) *times* the number of CPU-bound threads
waiting for it too. So the reporter thread managed ~10 POSTs per second whatever their
size, and with 256 spans per POST it could not deliver more than ~2,500 spans/s while
the request threads made 6,000 to 86,000. Encoding speed was never the limit; the
number of GIL hand-offs per span was. Hence this design:

* **A POST carries everything waiting, up to** ``max_batch_bytes`` (4 MiB) instead of
  256 spans. At ~10 POSTs/s under the worst contention that is tens of MB/s, far above
  what the request threads can produce. A send is due once 512 KiB of encoded spans
  wait (about as many spans as OpenTelemetry's 512-span batch), else every
  ``flush_interval``, on :meth:`~BatchReporter.flush` or :meth:`~BatchReporter.close`;
  whenever it goes it carries everything waiting, up to ``max_batch_bytes``. So a busy
  process makes few, large POSTs (each POST costs ~110 us of CPU whatever its size:
  ~0.15 us per span at 512 KiB), and what a worker holds between sends does not grow
  with its request rate: waiting only for the interval (the first version) held ~1 s
  of encoded spans and their framed copies. Measured back to back on a loaded machine
  (``bench_e2e.py --variants bare,traced --rounds 3 --duration 5``): traced workers'
  peak RSS over bare +4.8 MB before, +4.1 MB after.
  A body that large is made as its only large buffer (``_framing``): built the obvious
  way it existed three times over, and each copy paid its size in page faults (0.8 us
  per span at 4 MiB against 0.1 us). Even made once, a new 4 MiB block per POST is
  memory glibc takes from the kernel and gives back after the send (about 30,000 page
  faults per 200,000 spans, every page zeroed by the kernel), so for a sender that
  ``borrows_body`` (HTTP, file) large bodies are written into storage kept from one
  batch to the next (:class:`~._framing.BodyBuffer`, let go once the load falls):
  about 4,000 faults, and the capacity benchmark's judged first run went from
  279,552-341,782 to 297,073-390,156 spans/s in six back-to-back pairs (0.1-0.7 us
  less CPU per span).
* **Producers help when the worker falls behind.** :meth:`~BatchReporter.report` is an
  append while fewer than 1,024 spans (or half of ``max_queue_size``) wait to be
  encoded; above that mark (the worker is starved of interpreter time), the report that
  finds it encodes the 32 oldest waiting spans on the request thread (about one report
  in 32 pays ~60 us), so the raw queue shrinks instead of overflowing. Under normal
  load the worker is woken every 128 spans and encodes them in idle time; requests pay
  for encoding only when the process is saturated, which is exactly when nothing else
  would do it.
* **Short critical sections.** The lock is held only for counters and O(1) or C-level
  queue operations (a batch of thousands of pieces is a few whole chunks, see
  :class:`_PieceQueue`): a thread the interpreter preempts while holding it makes every
  reporting thread wait a switch interval. In the first version of this design, which
  popped pieces one by one under the lock, that wait was the request thread's largest
  cost after encoding (profiled in ``bench_reporter.py``'s worker shape).

With this design the same scenarios deliver 100 % (``bench_delivery.py``, README), and
the reporter's CPU per span is ~6 us of which encoding is ~4.5 us; the rest is the
report call, the queue and the POST (~8,000 spans per 4 MiB POST). Spans per second are
now bounded by the encoder. (Tried and measured: building the tag pairs with C-level
``map`` over a per-key-sequence plan was 2x *slower* than the cached per-tag loop, since
every element still costs a call.)
* **Bounded in bytes.** Encoded pieces wait in a second queue whose size is counted
  exactly; at ``max_queue_bytes`` (16 MiB) new spans are dropped (and counted) without
  being encoded. Spans not yet encoded are bounded in number (``max_queue_size``, and in
  practice 1,024 plus 16 per reporting thread) and each one in size by the span
  limits, so the whole queue is bounded. (Counting encoded bytes is exact and costs
  nothing on the request thread; estimating a raw span's size in ``report()`` would put
  a walk over its tags on every request.) :meth:`~BatchReporter.stats` shows both bounds
  and their use.
* **One oversized span never takes its batch down.** A span whose encoding alone
  exceeds ``max_batch_bytes`` fails alone (counted as failed, one warning), like OTLP
  says a client must; a batch the collector refuses as too large (HTTP 413, a
  :class:`~falcon_tracing_wsgi._types.SendError` with ``too_large``) is split in halves
  and each half sent again, down to the one span that is too large, which fails alone.

Default sizes, and why: 4 MiB per POST is a few times what a saturated process needs
and well below the collectors' defaults (OTLP recommends servers accept 64 MiB, the
OpenTelemetry/Jaeger collector 20 MiB); a proxy with a smaller limit (nginx's default
is 1 MiB) answers 413 and the split takes care of it. 16 MiB of queue is four POSTs: a
collector that is slow for a few seconds costs nothing, one that is down costs at most
16 MiB per process.

The rest
--------

* **Lazy, fork-safe worker.** No thread exists until the first :meth:`report` in the
  current process. ``os.register_at_fork(after_in_child=...)`` (through a weak
  reference) gives a forked child fresh locks, empty queues, zeroed counters and no
  worker; :meth:`report` also compares the pid once per wake-up, for forks that skip
  the at-fork hooks. The child never sends the parent's queued spans (the parent does),
  and never waits on a lock some parent thread held when it forked.
* **The concurrency model of the moment.** The locks and events are made again before
  the worker starts when ``threading`` was monkey-patched (gevent) after they were made
  (``gunicorn -k gevent --preload`` builds the reporter in the master, before the worker
  patches): an OS lock waited on by a greenlet blocks every greenlet of the process.
* **Every span is accounted for.** :meth:`BatchReporter.stats` returns ``queued``,
  ``sent``, ``dropped`` and ``failed``, and every span handed to :meth:`report` in this
  process is in exactly one of them, so their sum is the number of spans reported:

  ``queued``
      waiting (encoded or not), being encoded, or in a batch being sent right now.
  ``sent``
      accepted by the sender (the collector answered 2xx, the write succeeded).
  ``dropped``
      never sent, for lack of room or time: the queue was full (spans or bytes), the
      reporter was already closed, or :meth:`close` reached its deadline first.
  ``failed``
      sending was attempted and gave up: the collector rejected the batch (4xx), the
      retries ran out (timeouts, connection errors, 5xx), the span could not be encoded
      (it breaks the Span contract) or is larger than ``max_batch_bytes`` on its own.

* **Retries are bounded**: at most ``max_retries`` more attempts on retryable errors,
  with exponential backoff and full jitter (a uniform wait in
  ``[0, retry_backoff * 2**n]``), so that many processes do not retry in step. When the
  collector said how long to wait (``SendError.retry_after``, from ``Retry-After``),
  that wait replaces the backoff, within the deadline. A partial success (the sender
  returns :class:`~falcon_tracing_wsgi._types.PartialSuccess`) is not retried: its
  rejected spans count as ``failed``.
* **Deadlines are kept.** :meth:`flush` and :meth:`close` take a timeout and return
  within it whatever the destination does; the time left is passed down as the
  sender's timeout and caps the backoff waits. A sender's ``close()`` must not block
  (ours never wait for a send in progress). When a flush runs out of time, the batch in
  hand goes back to the head of the queue (unless its retries had run out).
* **Quiet failure.** While the destination keeps failing, at most one warning is logged
  per ``warn_interval`` (30 s), counting the suppressed ones; one line says when
  sending works again. Closing logs **one** summary line naming the format and the
  destination (:meth:`BatchReporter.summary`); the gunicorn hooks log it in their own
  line instead. At interpreter exit an ``atexit`` hook closes a reporter the
  application did not close, within ``shutdown_timeout``.

The encoder and sender contract is in :mod:`falcon_tracing_wsgi.export`.
:class:`NoopReporter` is the reporter for ``none``: it keeps nothing.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import random
import sys
import threading
import weakref
from bisect import bisect_right
from collections import deque
from itertools import accumulate, repeat, starmap
from time import monotonic as _monotonic
from time import sleep as _sleep
from typing import Any, Callable, Optional, Union

from .._sync import after_fork_in_child, lock_factory
from ._framing import Body, BodyBuffer, join_text

__all__ = ['BatchReporter', 'NoopReporter', 'DEFAULT_MAX_QUEUE_SIZE',
           'DEFAULT_MAX_QUEUE_BYTES', 'DEFAULT_MAX_BATCH_BYTES']

_log = logging.getLogger(__name__)
_getpid = os.getpid
_THREAD_NAME = 'falcon-tracing-wsgi-export'
_ABORT_GRACE = 0.1  # seconds close() waits for an aborted send to settle its batch

#: Spans (encoded or not) that may wait; a safety bound next to the byte bound.
DEFAULT_MAX_QUEUE_SIZE = 65536
#: Bytes of encoded spans that may wait for the destination.
DEFAULT_MAX_QUEUE_BYTES = 16 * 1024 * 1024
#: The most bytes in one request (one POST, one write).
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
#: A raw queue length report() never reaches (see BatchReporter._wake_at).
_UNREACHABLE = sys.maxsize
#: Encoded bytes waiting that make a send due before the flush interval (see the
#: module docstring: what a worker holds between two sends).
_SEND_AT_BYTES = 512 * 1024
#: Spans waiting to be encoded that wake the worker (it encodes them in idle time).
_WAKE_AT = 128
#: Spans waiting to be encoded above which a report() encodes _HELP of them.
_HELP_AT = 1024
_HELP = 32
#: Spans the worker encodes per round trip to the lock.
_ENCODE_CHUNK = 256
#: Framing allowance: per piece (a separator, a length prefix) and per batch (brackets,
#: an OTLP request's resource and scope).
_PIECE_OVERHEAD = 8
_BATCH_OVERHEAD = 1024

Piece = Union[str, bytes]


class _PieceQueue:
    """Encoded pieces waiting to be sent, with their sizes (use with the lock held).

    The pieces are kept in the chunks they were encoded in (a list of up to 256 pieces
    and its size in bytes), oldest first.

    PERF: nothing here runs per piece in Python. A batch takes whole chunks while they
    fit (one ``popleft`` and one C-level list extend each); only the chunk at the
    batch's edge is measured piece by piece (one ``accumulate`` and one bisect). This
    runs with the reporter's lock held, and a thread that the interpreter preempts while
    holding it makes every reporting thread wait a whole switch interval (5 ms). Kept
    per chunk, the running sizes of every piece are never computed (they cost ~1,000
    instructions per span, counted with ``bench_reporter.py --instructions``).

    ``len()`` and ``bytes`` are also read *without* the lock (``report()``'s bounds), so
    each is one attribute that a writer replaces in one store: a reader sees the value
    before or after an operation, never a mix (a length computed from two attributes
    read between a take's two stores was negative, and ``len()`` raised on the request
    thread).
    """

    __slots__ = ('_chunks', '_count', 'bytes')

    def __init__(self) -> None:
        self._chunks: deque[tuple[list[Piece], int]] = deque()
        self._count = 0  # pieces in every chunk, for readers without the lock
        self.bytes = 0

    def __len__(self) -> int:
        return self._count

    def extend(self, pieces: list[Piece], size: int) -> None:
        """Add a chunk of pieces whose sizes add up to ``size`` (the list is kept)."""
        if pieces:
            self._chunks.append((pieces, size))
            self._count += len(pieces)
            self.bytes += size

    def take(self, cap: int, budget: int) -> list[Piece]:
        """The oldest pieces, at most ``cap`` of them and ``budget`` bytes with framing."""
        chunks = self._chunks
        batch: list[Piece] = []
        count = taken = 0
        while chunks:
            pieces, size = chunks[0]
            more = len(pieces)
            if count + more <= cap and \
                    taken + size + (count + more) * _PIECE_OVERHEAD <= budget:
                chunks.popleft()
                batch += pieces
                count += more
                taken += size
                continue
            # The batch's edge is in this chunk: as many of its pieces as fit.
            ends = list(accumulate(map(len, pieces)))
            fit = min(bisect_right(ends, budget - taken), cap - count)
            while fit > 0 and taken + ends[fit - 1] + (count + fit) * _PIECE_OVERHEAD > budget:
                fit -= max(1, fit // 64)  # the framing allowance: a step or two back
            if not count and fit <= 0:
                fit = 1  # one piece always fits: larger ones failed when encoded
            if fit >= more:  # a lone piece larger than the budget (see above)
                chunks.popleft()
            elif fit > 0:
                chunks[0] = (pieces[fit:], size - ends[fit - 1])
            if fit > 0:
                batch += pieces[:fit]
                count += fit
                taken += ends[fit - 1]
            break
        self._count -= count
        self.bytes -= taken
        return batch

    def put_back(self, pieces: list[Piece]) -> None:
        """Put taken pieces back at the head (a flush out of time: rare)."""
        if pieces:
            size = sum(map(len, pieces))
            self._chunks.appendleft((pieces, size))
            self._count += len(pieces)
            self.bytes += size

    def clear(self) -> None:
        self._count = 0
        self._chunks.clear()
        self.bytes = 0


def _pop(queue: deque[Any], count: int) -> list[Any]:
    """The ``count`` oldest spans of ``queue`` (with the lock held).

    PERF: ``starmap`` calls ``popleft`` in a C loop: half the instructions of a list
    comprehension, inside the lock's critical section.
    """
    return list(starmap(queue.popleft, repeat((), count)))


class _WarningGate:
    """Logs at most one warning per interval, counting the ones it holds back."""

    __slots__ = ('interval', 'label', '_next', '_suppressed', 'failing')

    def __init__(self, interval: float, label: str) -> None:
        self.interval = interval
        self.label = label
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
        _log.warning('falcon-tracing-wsgi: %s: ' + message, self.label, *args,
                     exc_info=exc_info)
        self._next = now + self.interval
        self._suppressed = 0

    def recovered(self) -> None:
        if self.failing:
            self.failing = False
            _log.info('falcon-tracing-wsgi: %s: sending spans works again', self.label)


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


def _spans(count: int) -> str:
    return f'{count} span' if count == 1 else f'{count} spans'


class BatchReporter:
    """Queues finished spans and sends them in batches from a background thread.

    Args:
        sender: where batches go (:class:`~.http.HttpSender`, :class:`~.file.FileSender`,
            :class:`~.udp.UdpSender` or anything with ``send(body, span_count)`` and
            ``close()``; see :mod:`falcon_tracing_wsgi.export` for the optional parts).
        encoder: turns a span into one piece (:class:`~.zipkin.JsonV2Encoder`,
            :class:`~.xray.SegmentEncoder`); an object with ``encode(span)`` or a callable.
        max_queue_size: spans (encoded or not) that may wait; more are dropped (counted).
        batch_size: the most spans in one send (``None``: only ``max_batch_bytes``
            limits a batch); that many waiting spans are sent at once.
        flush_interval: seconds between sends of a batch that is not full.
        max_retries: further attempts after a retryable failure (0: no retries).
        retry_backoff: the first backoff's upper bound in seconds; doubles per retry.
        shutdown_timeout: seconds the ``atexit`` hook (and ``close()`` without a
            timeout) may take.
        warn_interval: seconds between two warnings about failed sends.
        max_queue_bytes: bytes of encoded spans that may wait; more are dropped.
        max_batch_bytes: the most bytes in one send; a span larger than this alone
            fails, and that many waiting bytes are sent at once.

    Raises:
        ValueError: an option is out of range; the message names it.
    """

    def __init__(self, sender: Any, encoder: Any, *,
                 max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
                 batch_size: Optional[int] = None, flush_interval: float = 1.0,
                 max_retries: int = 2, retry_backoff: float = 0.1,
                 shutdown_timeout: float = 5.0, warn_interval: float = 30.0,
                 max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> None:
        _positive('max_queue_size', max_queue_size, integer=True)
        if batch_size is not None:
            _positive('batch_size', batch_size, integer=True)
            if batch_size > max_queue_size:
                raise ValueError(f'BatchReporter batch_size ({batch_size}) must not exceed '
                                 f'max_queue_size ({max_queue_size})')
        _positive('flush_interval', flush_interval)
        _positive('max_retries', max_retries, integer=True, zero=True)
        _positive('retry_backoff', retry_backoff, zero=True)
        _positive('shutdown_timeout', shutdown_timeout, zero=True)
        _positive('warn_interval', warn_interval, zero=True)
        _positive('max_queue_bytes', max_queue_bytes, integer=True)
        _positive('max_batch_bytes', max_batch_bytes, integer=True)
        if max_batch_bytes > max_queue_bytes:
            raise ValueError(f'BatchReporter max_batch_bytes ({max_batch_bytes}) must not '
                             f'exceed max_queue_bytes ({max_queue_bytes})')
        encode = getattr(encoder, 'encode', encoder)
        if not callable(encode) or not callable(getattr(sender, 'send', None)):
            raise TypeError('BatchReporter needs a sender with send() and an encoder with '
                            'encode()')
        self._sender = sender
        self._encode = encode
        #: Reused storage for large bodies (see _framing.BodyBuffer), for a sender that
        #: borrows the body only while send() runs; one send at a time (_send_lock).
        self._body_buffer = BodyBuffer()
        self._frame: Callable[[list[Any]], Body] = self._choose_framing(sender, encoder)
        self._send_with_timeout = _accepts_timeout(sender.send)
        self.name = _describe(encoder, sender)
        self.max_queue_size = max_queue_size
        self.batch_size = batch_size
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = float(flush_interval)
        self.max_retries = max_retries
        self.retry_backoff = float(retry_backoff)
        self.shutdown_timeout = float(shutdown_timeout)
        self._batch_cap = batch_size if batch_size is not None else max_queue_size
        self._largest_piece = max_batch_bytes - _BATCH_OVERHEAD - _PIECE_OVERHEAD
        self._send_at = min(_SEND_AT_BYTES, max_batch_bytes)
        # a small queue (a test, a tiny service) gets help at half its size
        self._help_at = min(_HELP_AT, max(1, max_queue_size // 2))
        # A quarter of the byte bound encoded and waiting: see _report_slow.
        self._yield_at = max_queue_bytes // 4
        # the raw length before an append that wakes the worker: before any help is due
        self._wake_base = min(_WAKE_AT, self._batch_cap, self._help_at) - 1
        self._wake_at = self._wake_base
        self._warnings = _WarningGate(float(warn_interval), self.name)
        self._queue: deque[Any] = deque()       # spans waiting to be encoded
        self._encoded = _PieceQueue()           # encoded pieces waiting to be sent
        self._closed = False
        self._close_deadline: Optional[float] = None
        self._atexit_registered = False
        self._reset_process_state()
        after_fork_in_child(self._after_fork_in_child)

    def _choose_framing(self, sender: Any, encoder: Any) -> Callable[[list[Any]], Body]:
        """The transport's framing, else the format's, else a JSON array; into the
        reused body storage when that framing has a ``frame_into`` and the sender
        ``borrows_body`` (see the contract in :mod:`falcon_tracing_wsgi.export`)."""
        frame: Any = getattr(sender, 'frame', None)
        frame_into: Any
        if frame is not None:
            frame_into = getattr(sender, 'frame_into', None)
        else:
            frame = getattr(encoder, 'frame', None)
            frame_into = getattr(encoder, 'frame_into', None) if frame is not None \
                else _frame_json_array_into
        if frame_into is None or getattr(sender, 'borrows_body', False) is not True:
            return frame or _frame_json_array
        buffer = self._body_buffer

        def framing(pieces: list[Any]) -> Body:
            return frame_into(pieces, buffer)  # type: ignore[no-any-return]
        return framing

    # -- state that belongs to one process ------------------------------------------------

    def _make_primitives(self) -> None:
        """Locks and events of the concurrency model of the moment (see the module doc)."""
        self._lock_type = lock_factory()
        self._lock = threading.Lock()        # counters, queues and starting the worker
        self._send_lock = threading.Lock()   # one sender of batches at a time
        self._wake = threading.Event()       # work waits, or a flush/close came
        self._interrupt = threading.Event()  # close() cuts a retry backoff short

    def _reset_process_state(self) -> None:
        """Fresh locks, events, queues, counters and no worker (construction, child)."""
        self._make_primitives()
        self._queue.clear()
        self._encoded.clear()
        self._encoding = 0   # taken off the raw queue, being encoded
        self._in_flight = 0  # in a batch being sent
        self._sent = 0
        self._dropped = 0
        self._failed = 0
        self._thread: Optional[threading.Thread] = None
        self._pid = 0  # the process whose worker is running; 0 means none started
        self._wake_at = self._wake_base
        self._update_limits()

    def _after_fork_in_child(self) -> None:
        self._reset_process_state()
        self._body_buffer.release()  # the parent's storage: the child sends nothing yet
        self._warnings = _WarningGate(self._warnings.interval, self.name)

    def _check_process(self) -> None:
        pid = self._pid
        if pid and pid != _getpid():  # forked without the at-fork hook running
            self._after_fork_in_child()
        elif not pid and lock_factory() is not self._lock_type:
            # threading was monkey-patched since the primitives were made, and no worker
            # uses them yet in this process (gevent: cooperative, no switch in here).
            self._make_primitives()

    def _update_limits(self) -> None:
        """Recompute the hot path's one bound (call with the lock held, or unshared)."""
        # PERF: report() compares the raw queue's length with this one number, which
        # leaves room for what is being encoded and what is encoded; every change to
        # those (and closing, and a full byte queue) recomputes it.
        if self._closed or self._encoded.bytes >= self.max_queue_bytes:
            self._fast_limit = 0
        else:
            self._fast_limit = min(self._help_at, self.max_queue_size - len(self._encoded)
                                   - self._encoding)

    # -- the hot path -----------------------------------------------------------------------

    def report(self, span: Any) -> None:
        """Queue a finished span; never blocks on I/O and never raises.

        Args:
            span: a finished, sampled span (the Span contract).
        """
        # PERF: this runs on the request thread for every sampled span. Normally it is
        # a test, a length test and an append (no lock). The worker is started here
        # lazily (the at-fork hook sets _pid to 0 in a child). The second fork guard,
        # for forks that skip the at-fork hooks, needs os.getpid() (a system call), so
        # it runs once per wake-up only. Everything else (a full queue, a closed
        # reporter, a worker that falls behind) takes _report_slow.
        if not self._pid:
            self._start_worker()
        queue = self._queue
        waiting = len(queue)
        if waiting < self._fast_limit:
            queue.append(span)
            if waiting >= self._wake_at:
                # PERF: one wake-up per worker round: the mark goes out of reach until the
                # worker takes it (_worker_main lowers it again right after clearing the
                # event), so the reports meanwhile ask nothing (Event.is_set is a Python
                # call, and a starved worker leaves thousands of reports in between).
                self._wake_at = _UNREACHABLE
                if self._pid != _getpid():
                    self._start_worker()
                else:
                    self._wake.set()
            return
        self._report_slow(span)

    def _report_slow(self, span: Any) -> None:
        # NOTE: the bounds are read without the lock, as on the fast path: concurrent
        # reporters may overshoot them by one span each; taking the lock for every span
        # of a saturated process would make the request threads queue on it.
        queue = self._queue
        if self._closed or self._encoded.bytes >= self.max_queue_bytes or \
                len(queue) + len(self._encoded) + self._encoding >= self.max_queue_size:
            with self._lock:
                self._dropped += 1
            return
        queue.append(span)
        if len(queue) < self._help_at:
            return
        # The worker falls behind (starved of interpreter time): this thread encodes
        # the oldest waiting spans, so the queue shrinks instead of overflowing.
        # PERF: _HELP at a time (one lock round trip for all of them), which brings the
        # queue _HELP - 1 spans under the mark: about one report in _HELP pays, for
        # _HELP encodings (~60 us at ~2 us each; 16 at a time when encoding took 3 us
        # kept the same pause, but paid the two lock sections twice as often).
        with self._lock:
            count = min(_HELP, len(queue))
            batch = _pop(queue, count)
            self._encoding += count
            self._update_limits()
        self._encode_into_queue(batch)
        if self._encoded.bytes >= self._yield_at:
            # Encoded spans pile up faster than the worker sends them: it is waiting
            # for the interpreter, which this thread holds between switch intervals.
            # Hand it over now (a zero sleep, no I/O) instead of dropping spans once
            # the byte bound is reached. Never reached while the worker keeps up.
            _sleep(0)

    def _start_worker(self) -> None:
        self._check_process()
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
                _log.debug('falcon-tracing-wsgi: no export thread at interpreter shutdown')
                return
            self._thread = thread
            if not self._atexit_registered:
                self._atexit_registered = True
                atexit.register(_close_at_exit, weakref.ref(self))

    # -- encoding ---------------------------------------------------------------------------

    def _encode_into_queue(self, batch: list[Any]) -> None:
        """Encode spans taken off the raw queue (counted as encoding) into the byte queue."""
        encode = self._encode
        largest = self._largest_piece
        pieces: list[Piece] = []
        size = bad = oversized = biggest = 0
        count = len(batch)
        # PERF: the usual chunk (every span encodes, none too large) is checked with
        # C-level passes (map, ``None in``, max, sum) instead of a Python loop per span:
        # ~0.3 us a span less. Anything else re-encodes the chunk span by span below
        # (encoding is a pure function of the span), so each span is counted once.
        rest = batch
        try:
            fast: Optional[list[Any]] = list(map(encode, batch))
        except Exception:
            fast = None
        if fast and None not in fast:
            # PERF: a chunk no larger than the largest piece allowed has no piece too
            # large: one pass for the usual chunk (the max only past that).
            total = sum(map(len, fast))
            if total <= largest or max(map(len, fast)) <= largest:
                pieces = fast
                size = total
                rest = []
        add = pieces.append
        for span in rest:
            try:
                piece = encode(span)
            except Exception:
                piece = None
            if piece is None:
                bad += 1
                continue
            length = len(piece)
            if length > largest:
                oversized += 1
                biggest = max(biggest, length)
                continue
            add(piece)
            size += length
        with self._lock:
            self._encoding -= count
            if bad or oversized:
                self._failed += bad + oversized
            room = self.max_queue_bytes - self._encoded.bytes
            if size > room:  # full: keep what fits, oldest first
                kept = size = 0
                for piece in pieces:
                    if size + len(piece) > room:
                        break
                    size += len(piece)
                    kept += 1
                self._dropped += len(pieces) - kept
                del pieces[kept:]
            self._encoded.extend(pieces, size)
            self._update_limits()
            ready = self._batch_ready()
        if bad:
            self._warnings.warn('%s could not be encoded and failed (they break the Span '
                                'contract)', _spans(bad), outage=False)
        if oversized:
            self._warnings.warn('%s larger than max_batch_bytes (%d) failed alone (%d '
                                'bytes at most)', _spans(oversized), self.max_batch_bytes,
                                biggest, outage=False)
        if ready and not self._wake.is_set():
            self._wake.set()

    def _batch_ready(self) -> bool:
        """Whether a send is due before the interval (call with the lock held): a full
        ``batch_size``, or ``_SEND_AT_BYTES`` waiting (the send then takes everything
        waiting, up to ``max_batch_bytes``)."""
        encoded = len(self._encoded)
        return encoded >= self._batch_cap or (
            self._encoded.bytes + encoded * _PIECE_OVERHEAD + _BATCH_OVERHEAD
            >= self._send_at)

    def _encode_waiting(self, limit: Optional[int]) -> None:
        """Encode spans waiting in the raw queue (at most ``limit``; None: all now)."""
        left = len(self._queue) if limit is None else limit
        while left > 0:
            with self._lock:
                count = min(len(self._queue), _ENCODE_CHUNK, left)
                if count <= 0:
                    return
                batch = _pop(self._queue, count)
                self._encoding += count
                self._update_limits()
            left -= count
            self._encode_into_queue(batch)

    # -- sending ----------------------------------------------------------------------------

    def _deadline(self, deadline: Optional[float]) -> Optional[float]:
        closing = self._close_deadline
        if closing is None:
            return deadline
        return closing if deadline is None or closing < deadline else deadline

    def _drain(self, deadline: Optional[float], limit: Optional[int], partial: bool) -> bool:
        """Encode and send queued spans; ``limit`` caps how many (None: all).

        Sends full batches, and a partial one too when ``partial``. Returns whether every
        batch this call took was sent. Waits for a batch another thread is sending, but
        only until ``deadline``.
        """
        ok = True
        took = False
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
                    encoded = len(self._encoded)
                need = None if left is None else left - encoded
                if need is None or need > 0:
                    self._encode_waiting(need)
                batch = self._take_batch(left, partial)
                if batch is None:
                    if partial and not took:
                        # Nothing to send at all this round: the load is gone, and so
                        # is the reason to keep the body storage.
                        self._body_buffer.release()
                    return ok
                took = True
                if left is not None:
                    left -= len(batch)
                outcome = self._send_pieces(batch, deadline)
                if outcome is None:  # out of time: the batch went back to the queue
                    return False
                if not outcome:
                    ok = False
            finally:
                self._send_lock.release()

    def _take_batch(self, limit: Optional[int], partial: bool) -> Optional[list[Piece]]:
        """The oldest encoded pieces that fit one send, counted in flight; None if none."""
        with self._lock:
            if not self._encoded or (limit is not None and limit <= 0):
                return None
            if not partial and not self._batch_ready():
                return None
            cap = self._batch_cap if limit is None else min(self._batch_cap, limit)
            batch = self._encoded.take(cap, self.max_batch_bytes - _BATCH_OVERHEAD)
            self._in_flight += len(batch)
            self._update_limits()
            return batch

    def _requeue(self, batch: list[Piece]) -> None:
        with self._lock:
            self._encoded.put_back(batch)
            self._in_flight -= len(batch)
            self._update_limits()

    def _resolve(self, sent: int = 0, failed: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self._in_flight -= sent + failed + dropped
            self._sent += sent
            self._failed += failed
            self._dropped += dropped

    def _send_pieces(self, batch: list[Piece], deadline: Optional[float]) -> Optional[bool]:
        """Frame and send one batch, retrying as configured; split it if too large.

        Returns True when sent, False when (some of) it failed, and None when the
        deadline came first and the batch was put back at the head of the queue.
        """
        limit = self._deadline(deadline)
        if limit is not None and limit <= _monotonic():
            # Out of time before the first attempt: hand the spans back untouched.
            self._requeue(batch)
            return None
        count = len(batch)
        try:
            body = self._frame(batch)
        except Exception:
            self._resolve(failed=count)
            self._warnings.warn('framing %s failed', _spans(count), exc_info=True,
                                outage=False)
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
                    self._warnings.warn('the sender failed; %s lost', _spans(count),
                                        exc_info=True)
                    return False
                if getattr(exc, 'too_large', False):
                    return self._split(batch, deadline, exc)
                attempt += 1
                if not retryable:
                    self._resolve(failed=count)
                    self._warnings.warn('%s rejected, not retried: %s', _spans(count), exc)
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
                    self._warnings.warn('%s lost after %s: %s', _spans(count),
                                        '1 attempt' if attempt == 1 else f'{attempt} attempts',
                                        exc)
                    return False
                self._interrupt.wait(backoff)
                continue
            self._warnings.recovered()
            rejected = getattr(outcome, 'rejected', 0) if outcome is not None else 0
            if type(rejected) is int and rejected > 0:
                # A partial success (OTLP): never retried; the rejected spans failed.
                rejected = min(rejected, count)
                self._resolve(sent=count - rejected, failed=rejected)
                self._warnings.warn('the collector rejected %d of %s (not retried): %s',
                                    rejected, _spans(count),
                                    getattr(outcome, 'message', '') or 'no reason given',
                                    outage=False)
                return False
            self._resolve(sent=count)
            return True

    def _split(self, batch: list[Piece], deadline: Optional[float],
               exc: Exception) -> Optional[bool]:
        """The destination refused the batch as too large: send each half on its own."""
        if len(batch) == 1:
            self._resolve(failed=1)
            self._warnings.warn('a span of %d bytes is too large for the destination and '
                                'failed alone: %s', len(batch[0]), exc, outage=False)
            return False
        half = len(batch) // 2
        first = self._send_pieces(batch[:half], deadline)
        if first is None:  # out of time: the first half went back to the queue, and so
            self._requeue(batch[half:])  # does the second (ahead of it: order is cosmetic)
            return None
        second = self._send_pieces(batch[half:], deadline)
        if second is None:
            return None
        return first and second

    # -- control ----------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Send everything queued now, waiting at most ``timeout`` seconds.

        Args:
            timeout: the most seconds this call may take.

        Returns:
            Whether every span queued at the call was sent (and no batch failed
            meanwhile) within the time.
        """
        self._check_process()
        deadline = _monotonic() + max(0.0, timeout)
        with self._lock:
            failed_before = self._failed
        ok = self._drain(deadline, self._waiting(), True)
        with self._lock:
            return ok and self._failed == failed_before

    def close(self, timeout: Optional[float] = None, *, log_summary: bool = True) -> bool:
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
            log_summary: ``False`` when the caller logs :meth:`summary` itself (the
                gunicorn hooks do, in their own line).

        Returns:
            Whether every span queued or in flight at the call was sent within the time
            (none dropped, and no batch failed meanwhile). Spans lost before the call
            were counted and logged then; :meth:`stats` and :meth:`summary` tell the
            whole process's story.
        """
        self._check_process()
        deadline = _monotonic() + max(0.0, self.shutdown_timeout if timeout is None
                                      else timeout)
        with self._lock:
            first = not self._closed
            failed_before = self._failed
            self._closed = True
            self._update_limits()
            if self._close_deadline is None or deadline < self._close_deadline:
                self._close_deadline = deadline
        self._interrupt.set()
        self._wake.set()
        ok = self._drain(deadline, None, True)
        thread = self._thread
        if thread is threading.current_thread():
            thread = None  # close() called from the worker: it cannot wait for itself
        if thread is not None:
            thread.join(max(0.0, deadline - _monotonic()))
        try:
            self._sender.close()
        except Exception:
            _log.warning('falcon-tracing-wsgi: %s: closing the sender failed', self.name,
                         exc_info=True)
        if thread is not None and thread.is_alive():
            # Closing the sender aborts a send the worker is still stuck in (a collector
            # that hangs); the worker then settles that batch as failed at once. Waiting
            # briefly for it makes the counters final when close() returns.
            thread.join(_ABORT_GRACE)
        self._body_buffer.release()  # a body still being sent keeps its storage alive
        with self._lock:
            leftover = len(self._queue) + len(self._encoded)
            self._queue.clear()
            self._encoded.clear()
            self._dropped += leftover
            done = self._in_flight == 0 and self._encoding == 0
        if first and log_summary:
            self._log_summary()
        # A batch the worker was sending when close() began may fail meanwhile: close()
        # only waits for it, so its outcome is read from the counter, as flush() does.
        with self._lock:
            failed_during = self._failed != failed_before
        return ok and leftover == 0 and done and not failed_during

    def _waiting(self) -> int:
        with self._lock:
            return len(self._queue) + self._encoding + len(self._encoded)

    def stats(self) -> dict[str, int]:
        """Counters for this process, and the queue's use of its byte bound.

        ``queued``, ``sent``, ``dropped`` and ``failed`` add up to the number of spans
        reported in this process (see the module documentation for each one);
        ``queued_bytes`` is the size of the encoded spans waiting to be sent and
        ``max_queue_bytes`` its bound; ``body_bytes`` is the storage kept for large
        bodies while the process is busy (see ``_framing.BodyBuffer``; 0 once the load
        falls). A forked child starts from zero.
        """
        with self._lock:
            return {'queued': len(self._queue) + self._encoding + len(self._encoded)
                    + self._in_flight,
                    'sent': self._sent, 'dropped': self._dropped, 'failed': self._failed,
                    'queued_bytes': self._encoded.bytes,
                    'max_queue_bytes': self.max_queue_bytes,
                    'body_bytes': self._body_buffer.capacity}

    def summary(self) -> str:
        """One line: the format, the destination and the counters.

        For example ``zipkin to http://127.0.0.1:9411/api/v2/spans: 5 spans sent,
        0 dropped, 0 failed`` (``, 2 unsent`` is added when spans are still queued).
        """
        stats = self.stats()
        unsent = stats['queued']
        return (f'{self.name}: {_spans(stats["sent"])} sent, {stats["dropped"]} dropped, '
                f'{stats["failed"]} failed' + (f', {unsent} unsent' if unsent else ''))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _log_summary(self) -> None:
        stats = self.stats()
        total = stats['queued'] + stats['sent'] + stats['dropped'] + stats['failed']
        if not total:
            return
        level = logging.INFO if stats['sent'] == total else logging.WARNING
        _log.log(level, 'falcon-tracing-wsgi: closed %s', self.summary())

    def __repr__(self) -> str:
        return f'<BatchReporter {self.name} {self.stats()}>'


def _describe(encoder: Any, sender: Any) -> str:
    """'<format> to <destination>' for log lines."""
    owner = getattr(encoder, '__self__', encoder)  # a bound encode method: its encoder
    name = getattr(owner, 'name', None)
    if not isinstance(name, str):
        name = type(owner).__name__
    destination = getattr(sender, 'destination', None)
    if not isinstance(destination, str):
        destination = repr(sender)
    return f'{name} to {destination}'


def _frame_json_array(encoded: list[Any]) -> bytes:
    return join_text(encoded, '[', ',', ']')


def _frame_json_array_into(encoded: list[Any], buffer: BodyBuffer) -> Body:
    return join_text(encoded, '[', ',', ']', buffer)


def _worker_main(ref: weakref.ref[BatchReporter], wake: threading.Event,
                 interval: float) -> None:
    """The worker thread: encode what waits; send full batches, and the rest on time."""
    next_partial = _monotonic() + interval
    while True:
        wake.wait(max(0.0, next_partial - _monotonic()))
        reporter = ref()
        if reporter is None or reporter._wake is not wake:
            return  # the reporter is gone (or was reset)
        wake.clear()
        # After the clear: a report that raised the mark before it is drained below, one
        # after it wakes the next round.
        reporter._wake_at = reporter._wake_base
        now = _monotonic()
        partial = now >= next_partial
        if partial:
            next_partial = now + interval
        try:
            # A partial batch only for what waits now: spans arriving meanwhile wait
            # for a full batch or the next interval (few, large sends under load).
            reporter._drain(None, reporter._waiting() if partial else None, partial)
        except Exception:  # never let the worker die silently with spans queued
            _log.warning('falcon-tracing-wsgi: unexpected error in the export thread',
                         exc_info=True)
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

    name = 'none'

    def report(self, span: Any) -> None:
        """Discard the span."""

    def flush(self, timeout: float) -> bool:
        """Nothing to flush."""
        return True

    def close(self, timeout: Optional[float] = None, *, log_summary: bool = True) -> bool:
        """Nothing to close."""
        return True

    def stats(self) -> dict[str, int]:
        """Always zeros: nothing is kept or counted."""
        return {'queued': 0, 'sent': 0, 'dropped': 0, 'failed': 0, 'queued_bytes': 0,
                'max_queue_bytes': 0, 'body_bytes': 0}

    def summary(self) -> str:
        """Nothing was exported."""
        return 'none: nothing exported'
