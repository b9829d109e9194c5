"""Collector fault scenarios under load, measured; shared by the tests and ``report.py``.

One scenario is one traced service (``wrap()`` of a small Falcon app, configured only
through ``FALCON_TRACING_*`` variables, as in production) and one collector on 127.0.0.1
in another process (:class:`~tests.reliability._remote.RemoteCollector`). It runs in four
phases:

1. **Fault, latency.** The fault is applied and ``LOAD_REQUESTS`` requests are driven by
   ``LOAD_THREADS`` threads calling the WSGI app directly, each request timed from the
   call to the close of the response (the close finishes and reports the span).
2. **Fault, memory.** As many requests again under :mod:`tracemalloc`: the peak of the
   memory allocated during the phase. (A separate phase, because tracing every
   allocation makes requests several times slower and would spoil the latencies.)
3. **Recovery.** The fault ends (the collector comes back, or answers normally again);
   ``RECOVERY_REQUESTS`` requests follow and the time is measured until a span of each
   of them is at the collector (trace ids from the ``X-Trace-Id`` response header).
4. **Shutdown under the fault.** The fault is applied again, ``SHUTDOWN_REQUESTS``
   requests overfill the queue, and the reporter is closed with the configured
   ``FALCON_TRACING_SHUTDOWN_TIMEOUT`` (what the ``atexit`` hook does). Then the
   reporter's counters are final and compared with the spans the collector received.

The app waits ``APP_IO_SECONDS`` per request on an event that is never set: a stand-in
for the database call a real request makes, which releases the GIL as real I/O does.
Without it, two threads in a tight loop would hold the GIL all the time and measure
only how the reporter thread competes for it.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
import time
import tracemalloc
from typing import Any, Callable, Iterator, NamedTuple, Optional
from unittest import mock

import falcon
import falcon.testing
import opentracing

from falcon_tracing_wsgi import TracingMiddleware, wrap
from falcon_tracing_wsgi.config import TracingConfig
from falcon_tracing_wsgi.testing import make_tracer

from tests.certificates import make_certificate

from ._remote import RemoteCollector, free_port

__all__ = ['SETTINGS', 'SCENARIOS', 'Scenario', 'Result', 'run_scenario', 'build_app',
           'traced_app', 'drive', 'span_bytes', 'memory_bound',
           'certificate', 'percentile', 'Sustained', 'run_sustained']


def counters(stats: dict[str, int]) -> dict[str, int]:
    """The reporter's four counters (``stats()`` also shows the byte bound and its use)."""
    return {key: stats[key] for key in ('queued', 'sent', 'dropped', 'failed')}


QUEUE_SIZE = 128
BATCH_SIZE = 32
SHUTDOWN_TIMEOUT = 1.0
EXPORT_TIMEOUT = 2.0

#: The service's configuration in every scenario (the collector URL is added per run).
SETTINGS = {
    'FALCON_TRACING_SERVICE_NAME': 'reliability',
    'FALCON_TRACING_QUEUE_SIZE': str(QUEUE_SIZE),
    'FALCON_TRACING_BATCH_SIZE': str(BATCH_SIZE),
    'FALCON_TRACING_FLUSH_INTERVAL': '0.05',
    'FALCON_TRACING_EXPORT_TIMEOUT': str(EXPORT_TIMEOUT),
    'FALCON_TRACING_MAX_RETRIES': '1',
    'FALCON_TRACING_SHUTDOWN_TIMEOUT': str(SHUTDOWN_TIMEOUT),
    'FALCON_TRACING_RESPONSE_TRACE_HEADER': 'X-Trace-Id',
}

LOAD_THREADS = 2
LOAD_REQUESTS = 2000
RECOVERY_REQUESTS = 20
SHUTDOWN_REQUESTS = 400
APP_IO_SECONDS = 0.001
SLOW_SECONDS = 1.0        # the slow collector answers after this long (< EXPORT_TIMEOUT)
RECOVERY_TIMEOUT = 15.0   # seconds to wait for spans after the fault ended
RECOVERY_STEP = 10        # requests between two looks at the collector while recovering
RECOVERY_WAIT = 0.01      # seconds each look may wait for a span to arrive
SHUTDOWN_MARGIN = 0.5     # seconds close() may take beyond its deadline

_NEVER = threading.Event()  # the app's stand-in for I/O waits on it; nobody sets it
BODY = b'{"id": "42"}'


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        _NEVER.wait(APP_IO_SECONDS)
        resp.media = {'id': item_id}


def build_app() -> falcon.App:
    """The small Falcon app under test: ``GET /items/{item_id}``."""
    app = falcon.App()
    app.add_route('/items/{item_id}', Item())
    return app


def traced_app(url: str, **overrides: str) -> Any:
    """``wrap(build_app())`` configured by the environment (:data:`SETTINGS` + ``url``)."""
    settings = dict(SETTINGS, FALCON_TRACING_ZIPKIN_URL=url, **overrides)
    with mock.patch.dict(os.environ, settings):
        return wrap(build_app())


class Load(NamedTuple):
    """What one batch of requests gave."""

    latencies: list[float]   # seconds per request, sorted
    failed: int              # requests that did not get the app's own 200 response
    trace_ids: list[str]     # from the X-Trace-Id response header
    seconds: float           # wall time of the whole batch


def drive(app: Any, requests: int, threads: int = LOAD_THREADS,
          between: Optional[Callable[[int], None]] = None) -> Load:
    """Send ``requests`` GETs through ``app`` from ``threads`` threads, like a server.

    Args:
        between: called with the number of requests done after each third of the
            load (all threads paused), for faults that strike mid-run.
    """
    template = falcon.testing.create_environ('/items/42', query_string='page=1',
                                             remote_addr='10.1.2.3')
    latencies: list[float] = []
    trace_ids: list[str] = []
    failed = [0]
    lock = threading.Lock()

    def one() -> None:
        environ = dict(template)
        environ['wsgi.input'] = io.BytesIO(b'')
        seen: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            seen.append((status, headers))
            return lambda data: None

        start = time.perf_counter()
        try:
            result = app(environ, start_response)
            try:
                body = b''.join(result)
            finally:
                close = getattr(result, 'close', None)
                if close is not None:
                    close()
        except Exception:
            body = b''
        elapsed = time.perf_counter() - start
        ok = body == BODY and len(seen) == 1 and seen[0][0] == '200 OK'
        trace_id = next((v for k, v in seen[0][1] if k == 'X-Trace-Id'), None) if seen \
            else None
        with lock:
            latencies.append(elapsed)
            if not ok:
                failed[0] += 1
            if trace_id is not None:
                trace_ids.append(trace_id)

    def run(count: int) -> None:
        workers = [threading.Thread(target=lambda n=n: [one() for _ in range(n)])
                   for n in _shares(count, threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    start = time.perf_counter()
    if between is None:
        run(requests)
    else:
        done = 0
        for part in _shares(requests, 3):
            run(part)
            done += part
            between(done)
    seconds = time.perf_counter() - start
    return Load(sorted(latencies), failed[0], trace_ids, seconds)


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted ``values`` (nearest rank)."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(fraction * len(values)))]


@contextlib.contextmanager
def _traced_memory() -> Iterator[list[int]]:
    """Yield a list that receives the peak bytes allocated (and not freed) inside."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    out: list[int] = []
    try:
        yield out
    finally:
        out.append(max(0, tracemalloc.get_traced_memory()[1] - base))
        if not was_tracing:
            tracemalloc.stop()


def span_bytes(requests: int = 500) -> float:
    """Memory one finished span of :func:`build_app` holds (measured, in bytes).

    The spans are kept in an in-memory reporter, so each one is counted whole (tags,
    context, ids) the way a queued span is held.
    """
    tracer, reporter = make_tracer()
    app = TracingMiddleware(build_app(), tracer=tracer, config=TracingConfig(
        response_trace_header='X-Trace-Id'))
    drive(app, 20, threads=1)  # warm up caches first
    reporter.clear()
    with _traced_memory() as peak:
        drive(app, requests, threads=1)
        held = tracemalloc.get_traced_memory()[0]
    del peak
    assert len(reporter.spans) == requests
    return held / requests


def memory_bound(per_span: float) -> int:
    """The most memory a fault phase may hold: a full queue, a batch being sent and
    one being encoded (each span twice, as object and JSON), and 1 MiB for the app's
    own per-request objects and the sender's buffers."""
    return int((QUEUE_SIZE + 2 * BATCH_SIZE) * per_span * 2 + 1024 * 1024)


# -- the scenarios ---------------------------------------------------------------------------

class Scenario(NamedTuple):
    """One way the collector misbehaves."""

    name: str
    title: str
    apply: Callable[[RemoteCollector, Optional[tuple[str, str]]], None]
    heal: Optional[Callable[[RemoteCollector, Optional[tuple[str, str]]], None]]
    up_at_start: bool = True   # False: nothing has ever listened on the port
    mid_run: bool = False      # the fault strikes after a third of the load, not before
    tls: bool = False          # the collector serves a certificate the client distrusts
    # False where the collector may store a batch the client already gave up on (it
    # answers too late, or is stopped while parsing it): received is then between sent
    # and sent + failed. Elsewhere received == sent exactly.
    exact_delivery: bool = True


def _nothing(collector: RemoteCollector, cert: Optional[tuple[str, str]]) -> None:
    pass


def _stop(collector: RemoteCollector, cert: Optional[tuple[str, str]]) -> None:
    collector.stop()


def _start_again(collector: RemoteCollector, cert: Optional[tuple[str, str]]) -> None:
    collector.start(collector.port, None)  # a new collector on the same port


def _fault(**fault: Any) -> Callable[[RemoteCollector, Optional[tuple[str, str]]], None]:
    def apply(collector: RemoteCollector, cert: Optional[tuple[str, str]]) -> None:
        collector.set_fault(**fault)
    return apply


SCENARIOS = (
    Scenario('healthy', 'collector up (baseline)', _nothing, _nothing),
    Scenario('down', 'collector down: connection refused', _stop, _start_again,
             up_at_start=False),
    Scenario('http_500', 'collector answers 500', _fault(status=500), _fault()),
    Scenario('http_503', 'collector answers 503', _fault(status=503), _fault()),
    Scenario('http_400', 'collector answers 400', _fault(status=400), _fault()),
    Scenario('hang', 'collector accepts, never answers', _fault(hang=True), _fault()),
    Scenario('slow', f'collector answers after {SLOW_SECONDS:g} s',
             _fault(delay=SLOW_SECONDS), _fault(), exact_delivery=False),
    Scenario('restart', 'collector stopped mid-run, a new one on the same port',
             _stop, _start_again, mid_run=True, exact_delivery=False),
    Scenario('tls', 'https, self-signed certificate not trusted', _nothing, None,
             tls=True),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


class Result(NamedTuple):
    """What a scenario measured (times in seconds, memory in bytes)."""

    name: str
    title: str
    requests: int                  # every request of every phase
    failed_requests: int
    finished: int                  # spans finished (one per request: all are sampled)
    stats: dict[str, int]          # the reporter's counters after close()
    received: int                  # spans the collector(s) stored
    p50: float                     # request latency during the fault
    p99: float
    memory_peak: int               # allocated and held at the peak of the memory phase
    memory_bound: int              # what a full queue may hold (:func:`memory_bound`)
    recovery: Optional[float]      # until a span reported after the fault ended arrived
    recovered: Optional[bool]      # and all later ones did; None: the fault never ends
    shutdown: float                # close() under the fault
    shutdown_deadline: float
    close_ok: bool                 # close()'s own answer: everything sent in time


def run_scenario(name: str, collector: RemoteCollector,
                 cert: Optional[tuple[str, str]] = None,
                 per_span: Optional[float] = None) -> Result:
    """Run one scenario against ``collector`` (a :class:`RemoteCollector` host).

    Args:
        name: a :data:`SCENARIOS` name.
        collector: the collector host; stopped again at the end.
        cert: ``(cert, key)`` of the TLS scenario's self-signed certificate.
        per_span: :func:`span_bytes`, if measured already.
    """
    scenario = BY_NAME[name]
    if scenario.tls and cert is None:
        raise ValueError('the tls scenario needs a certificate')
    if per_span is None:
        per_span = span_bytes()
    collector.stop()
    collector.reset()
    if scenario.up_at_start:
        collector.start(0, cert if scenario.tls else None)
    else:
        collector.port = free_port()
        collector.scheme = 'http'
    app = traced_app(collector.url)
    tracer: Any = opentracing.global_tracer()
    reporter = tracer.reporter
    try:
        drive(app, 50)  # warm-up: the worker thread, the connection, the caches
        requests = 50
        failed = 0
        if scenario.mid_run:
            def strike(done: int) -> None:
                if done < LOAD_REQUESTS // 2:
                    scenario.apply(collector, cert)
            load = drive(app, LOAD_REQUESTS, between=strike)
        else:
            scenario.apply(collector, cert)
            load = drive(app, LOAD_REQUESTS)
        with _traced_memory() as peak:
            memory_load = drive(app, LOAD_REQUESTS)
        requests += LOAD_REQUESTS * 2
        failed += load.failed + memory_load.failed

        recovery: Optional[float] = None
        recovered: Optional[bool] = None
        if scenario.heal is not None:
            healed_at = time.perf_counter()
            scenario.heal(collector, cert)
            # Load goes on in small steps until a span reported after the fault ended
            # is at the collector: the time to recover, as a service under load sees it.
            while time.perf_counter() - healed_at < RECOVERY_TIMEOUT:
                step = drive(app, RECOVERY_STEP, threads=1)
                requests += RECOVERY_STEP
                failed += step.failed
                if collector.watch(step.trace_ids, RECOVERY_WAIT):
                    recovery = time.perf_counter() - healed_at
                    break
            # Delivery has resumed for good: every span reported from now on arrives.
            after = drive(app, RECOVERY_REQUESTS, threads=1)
            requests += RECOVERY_REQUESTS
            failed += after.failed
            recovered = recovery is not None and collector.wait_for_traces(
                after.trace_ids, RECOVERY_TIMEOUT)
            scenario.apply(collector, cert)

        last = drive(app, SHUTDOWN_REQUESTS)
        requests += SHUTDOWN_REQUESTS
        failed += last.failed
        started = time.perf_counter()
        close_ok = reporter.close()  # no timeout: shutdown_timeout, as at exit
        shutdown = time.perf_counter() - started
        stats = counters(reporter.stats())
    finally:
        reporter.close(0)  # quiet and harmless after close(); closes it after an error
    received = collector.counts()[0]
    collector.stop()
    return Result(name, scenario.title, requests, failed, requests, stats, received,
                  percentile(load.latencies, 0.5), percentile(load.latencies, 0.99),
                  peak[0], memory_bound(per_span), recovery, recovered, shutdown,
                  reporter.shutdown_timeout, close_ok)


@contextlib.contextmanager
def certificate() -> Iterator[Optional[tuple[str, str]]]:
    """A temporary self-signed certificate (None when ``openssl`` is missing)."""
    with tempfile.TemporaryDirectory() as folder:
        yield make_certificate(folder)


# -- sustained load --------------------------------------------------------------------------

SUSTAINED_SETTINGS = {'FALCON_TRACING_QUEUE_SIZE': '2048', 'FALCON_TRACING_BATCH_SIZE': '256',
                      'FALCON_TRACING_FLUSH_INTERVAL': '0.2'}
MEMORY_SAMPLE_SECONDS = 0.1


class Sustained(NamedTuple):
    """What the sustained-load run measured (memory in bytes)."""

    seconds: float
    answered: int                  # requests that got the app's own 200 response
    failed_requests: int
    stats: dict[str, int]
    received: int
    thirds: tuple[float, float, float]  # mean traced memory in each third of the run
    shutdown: float


def run_sustained(collector: RemoteCollector, seconds: float) -> Sustained:
    """Drive load for ``seconds`` against a healthy collector, sampling memory.

    Memory is :mod:`tracemalloc`'s current total, sampled every
    ``MEMORY_SAMPLE_SECONDS`` from a timer thread, averaged per third of the run.
    """
    collector.stop()
    collector.reset()
    collector.start()
    app = traced_app(collector.url, **SUSTAINED_SETTINGS)
    tracer: Any = opentracing.global_tracer()
    reporter = tracer.reporter
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(MEMORY_SAMPLE_SECONDS):
            samples.append((time.perf_counter(), tracemalloc.get_traced_memory()[0]))

    try:
        drive(app, 200)  # warm-up: caches, the connection, the worker
        answered = failed = 0
        with _traced_memory():
            sampler = threading.Thread(target=sample, name='memory-sampler', daemon=True)
            start = time.perf_counter()
            sampler.start()
            try:
                while time.perf_counter() - start < seconds:
                    load = drive(app, 200)
                    answered += len(load.latencies) - load.failed
                    failed += load.failed
            finally:
                stop.set()
                sampler.join(5.0)
            elapsed = time.perf_counter() - start
        answered += 200
        started = time.perf_counter()
        reporter.close()
        shutdown = time.perf_counter() - started
        stats = counters(reporter.stats())
    finally:
        reporter.close(0)
    collector.wait_for_spans(answered, 10.0)
    received = collector.counts()[0]
    collector.stop()
    third = elapsed / 3
    means = []
    for index in range(3):
        values = [value for at, value in samples
                  if start + index * third <= at < start + (index + 1) * third]
        means.append(sum(values) / len(values) if values else 0.0)
    return Sustained(elapsed, answered, failed, stats, received,
                     (means[0], means[1], means[2]), shutdown)
