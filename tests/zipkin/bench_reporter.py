"""Throughput of the Zipkin pipeline: spans encoded and POSTed per second by one process.

Not collected by pytest. Run::

    python tests/zipkin/bench_reporter.py [--spans 400000] [--gzip]

The collector side is a minimal HTTP/1.1 sink in a *separate process* (it reads each
request body completely and answers ``202``), so the figure is the reporter's own cost:
the encoder, framing and the HTTP POSTs over a keep-alive connection on 127.0.0.1.

Three figures:

* ``encode``: :meth:`JsonV2Encoder.encode` alone, timed with :mod:`timeit`.
* ``flush``: ``report()`` N spans into a queue big enough for all of them, then time
  ``flush()`` - encode, frame and send in batches of 256 - end to end. The worker, woken
  by the full queue, drains alongside the flushing thread, so this includes the cost of
  two threads taking turns.
* ``worker``: the production shape. The main thread calls ``report()`` N times (as
  request threads do) while the reporter's worker thread encodes and sends batches of
  256; timed from the first ``report()`` until every span was sent. The queue holds all
  N spans so that the figure is throughput, not drops.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import threading
import time
import timeit

from falcon_tracing_wsgi.tracer.context import SpanContext
from falcon_tracing_wsgi.zipkin import BatchReporter, Endpoint, HttpSender, JsonV2Encoder


class BenchSpan:
    __slots__ = ('_context', 'operation_name', 'start_time', 'duration', 'tags', 'logs')

    def __init__(self, index: int) -> None:
        self._context = SpanContext('4e441824ec2b6a44ffdc9bb9a6453df3', f'{index + 1:016x}',
                                    '6b221d5bc9e6496c', True)
        self.operation_name = 'GET /users/{user_id}'
        self.start_time = time.time()
        self.duration = 0.000_812
        # What the middleware records on a typical server span.
        self.tags = {'span.kind': 'server', 'component': 'falcon', 'http.method': 'GET',
                     'http.url': 'http://localhost:8000/users/42?page=1',
                     'http.status_code': 200, 'peer.ipv4': '127.0.0.1', 'peer.port': 54321}
        self.logs = None

    @property
    def context(self) -> SpanContext:  # a property, as on opentracing.Span
        return self._context


def _sink(ready: 'multiprocessing.Queue[int]') -> None:
    listener = socket.create_server(('127.0.0.1', 0))
    ready.put(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


def _serve(conn: socket.socket) -> None:
    reply = b'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n'
    stream = conn.makefile('rb')
    while True:
        length = None
        while True:
            line = stream.readline(65536)
            if not line:
                return
            if line in (b'\r\n', b'\n'):
                break
            name, _, value = line.partition(b':')
            if name.strip().lower() == b'content-length':
                length = int(value)
        stream.read(length or 0)
        conn.sendall(reply)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--spans', type=int, default=400_000)
    parser.add_argument('--gzip', action='store_true')
    args = parser.parse_args()
    n = args.spans

    encoder = JsonV2Encoder(Endpoint('bench-service', '10.0.0.7', port=8000))
    span = BenchSpan(0)
    print(f'one encoded span: {len(encoder.encode(span))} bytes')
    runs = 200_000
    best = min(timeit.repeat(lambda: encoder.encode(span), number=runs, repeat=5))
    print(f'encode:    {runs / best:>10,.0f} spans/s ({best / runs * 1e6:.2f} us/span, '
          f'best of 5 x {runs})')

    ready: 'multiprocessing.Queue[int]' = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_sink, args=(ready,), daemon=True)
    sink.start()
    url = f'http://127.0.0.1:{ready.get(timeout=10)}/api/v2/spans'
    try:
        spans = [BenchSpan(i) for i in range(n)]

        reporter = BatchReporter(HttpSender(url, gzip=args.gzip), encoder,
                                 max_queue_size=n, batch_size=256)
        for item in spans:
            reporter.report(item)
        start = time.perf_counter()
        ok = reporter.flush(120.0)
        elapsed = time.perf_counter() - start
        stats = reporter.stats()
        reporter.close(5.0)
        print(f'flush:     {n / elapsed:>10,.0f} spans/s encoded and sent '
              f'({n} spans in {elapsed:.2f} s, ok={ok}, {stats})')

        # The production shape: the request thread only calls report(); the worker
        # thread encodes and sends. Time from the first report until all were sent
        # (polling the counters, which is fine in a benchmark and not in a test).
        reporter = BatchReporter(HttpSender(url, gzip=args.gzip), encoder,
                                 max_queue_size=n, batch_size=256)
        report = reporter.report
        start = time.perf_counter()
        for item in spans:
            report(item)
        reported = time.perf_counter() - start
        while reporter.stats()['queued']:
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        stats = reporter.stats()
        reporter.close(5.0)
        print(f'worker:    {stats["sent"] / elapsed:>10,.0f} spans/s reported, encoded and sent '
              f'by the worker thread ({n} spans in {elapsed:.2f} s; report() took '
              f'{reported / n * 1e6:.2f} us/span; {stats})')
    finally:
        sink.terminate()
        sink.join(5)


if __name__ == '__main__':
    main()
