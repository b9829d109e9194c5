"""Memory held for unsent spans while the collector never answers (issue 11).

Each scenario runs in a fresh process: a Falcon app wrapped by ``wrap()``, configured
only by ``FALCON_TRACING_*`` variables, exporting to a socket on 127.0.0.1 that accepts
connections and never answers (a listening socket nobody accepts from: the handshake
completes in the backlog, the upload waits for its timeout). Default settings; enough
requests are made to fill the pipeline's byte bound (``FALCON_TRACING_QUEUE_BYTES``,
16 MiB of encoded spans) and then some, so the queue is full and a batch is stuck in
the sender.

Figures per scenario:

* ``held``: bytes allocated and still live after the requests (:mod:`tracemalloc`),
  which is what the full queue and the stuck batch hold;
* ``rss``: growth of the resident set over the same requests (``VmRSS``);
* ``queued``: spans held at the end (encoded or not, the batch stuck in the sender too);
* ``est. span B``: the encoded size of one scenario span (:func:`estimate_size`);
* ``worst bound``: ``max_queue_bytes + 1,040 * max_span_memory(limits)``, the memory
  the pipeline can hold whatever the app records: the encoded bytes, and the spans not
  yet encoded (1,024 before request threads help encode, 16 in a helping thread's hands)
  each filling every limit with 4-byte characters.

Scenarios: ``events`` (1,000 ``log_kv`` records per request), ``big_tag`` (a unique
100 kB tag per request), ``plain`` (the usual server span). Run against another copy
of the package with ``PYTHONPATH=/path/to/that/copy`` (from outside this checkout) to
compare.

Run: ``python benchmarks/bench_span_memory.py [--requests 20000] [--only events]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tracemalloc

SCENARIOS = ('plain', 'events', 'big_tag')


def _rss() -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


#: Spans not yet encoded that the pipeline may hold: its help mark and one helper's hands.
_UNENCODED = 1024 + 16


def _child(scenario: str, port: int, requests: int) -> dict[str, object]:
    os.environ.update({
        'FALCON_TRACING_ZIPKIN_URL': f'http://127.0.0.1:{port}/api/v2/spans',
        'FALCON_TRACING_EXPORT_TIMEOUT': '600', 'FALCON_TRACING_MAX_RETRIES': '0',
        'FALCON_TRACING_SHUTDOWN_TIMEOUT': '0', 'FALCON_TRACING_SERVICE_NAME': 'memory'})
    import falcon
    import falcon.testing
    import opentracing

    from falcon_tracing_wsgi import wrap

    counter = [0]

    class Resource:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            counter[0] += 1
            span = req.context.span
            if scenario == 'events':
                for number in range(1000):
                    span.log_kv({'event': 'cache-lookup', 'key': f'user:{number}',
                                 'hit': number % 3 == 0})
            elif scenario == 'big_tag':
                span.set_tag('payload', f'{counter[0]:08d}' + 'p' * 100_000)
            resp.media = {'ok': True}

    app = falcon.App()
    app.add_route('/work', Resource())
    client = falcon.testing.TestClient(wrap(app))
    client.simulate_get('/work')  # warm up: imports, caches, the reporter thread
    tracemalloc.start()
    base, rss = tracemalloc.get_traced_memory()[0], _rss()
    for _ in range(requests):
        client.simulate_get('/work')
    held, rss_growth = tracemalloc.get_traced_memory()[0] - base, _rss() - rss
    tracemalloc.stop()
    tracer = opentracing.global_tracer()
    stats = tracer.reporter.stats()
    result: dict[str, object] = {'scenario': scenario, 'requests': requests, 'held': held,
                                 'rss': rss_growth, 'stats': stats}
    try:
        from falcon_tracing_wsgi.tracer.limits import estimate_size, max_span_memory
    except ImportError:  # a copy of the package from before the span limits
        return result
    span = tracer.start_span('GET /work')
    Resource().on_get(type('Req', (), {'context': type('C', (), {'span': span})})(),
                      falcon.Response())
    result['estimate'] = estimate_size(span)
    result['worst_bound'] = (int(stats['max_queue_bytes'])
                             + _UNENCODED * max_span_memory(tracer.span_limits))
    return result


def _run(scenario: str, requests: int) -> dict[str, object]:
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(64)  # never accepted: the upload waits
        port = silent.getsockname()[1]
        out = subprocess.run([sys.executable, __file__, '--child', scenario, '--port',
                              str(port), '--requests', str(requests)],
                             capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--requests', type=int, default=20_000)
    parser.add_argument('--only', default=','.join(SCENARIOS))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--port', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.port, args.requests)))
        return 0
    mib = 1024 * 1024
    print(f'{"scenario":10} {"requests":>8} {"queued":>6} {"dropped":>7} {"held MiB":>9} '
          f'{"RSS MiB":>8} {"est. span B":>11} {"worst bound GiB":>15}')
    for scenario in args.only.split(','):
        r = _run(scenario, args.requests)
        stats = r['stats']
        assert isinstance(stats, dict)
        estimate = r.get('estimate', '')
        worst = f'{int(r["worst_bound"]) / 1024 / mib:15.1f}' if 'worst_bound' in r else ''
        print(f'{scenario:10} {r["requests"]:8} {stats["queued"]:6} {stats["dropped"]:7} '
              f'{int(r["held"]) / mib:9.1f} {int(r["rss"]) / mib:8.1f} {estimate:>11} '
              f'{worst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
