"""Delivery under load: how many of the spans a busy process makes reach the collector.

Each scenario runs in its own fresh process with **default settings** (only the service
name and the collector URL are set, as a deployment would), the wrapped benchmark app
(``apps.py``) called in-process from request threads for a fixed time, and the counting
sink (``sink.py``, another process, a fast collector that only counts) as the collector.
Requests never release the GIL (no sockets on the request path), which is the hard case
for a reporter thread: it runs only when the interpreter forces a switch.

Scenarios (issue 12):

* ``cpu-1``/``cpu-4``/``cpu-8``: 1, 4 or 8 threads, each request does ~100 us of
  pure-Python work in the responder (a CPU-bound service).
* ``children-4``: 4 threads, each request makes 30 child spans (an app that traces its
  database or cache calls), no other work.
* ``tight-1``: one thread calling the app in a tight loop (no work at all).
* ``gthread-8``: a real gunicorn, ``-w 1 -k gthread --threads 8``, serving ``apps.py``'s
  ``traced_children`` variant (``GET /hello`` making 30 child spans per request) with the
  package's gunicorn hooks, as the README deploys it, under ``wrk -t2 -c32`` (or
  ``loadgen.py`` when wrk is not installed; the table says which) for ``--seconds``
  (at least 2). Spans made = requests answered x 31 (``gunicorn_conf.py`` counts them);
  the worker's reporter ``stats()`` after its exit hook closed it give dropped and failed.
  Here the request threads do release the GIL (sockets), but the worker's main thread
  (gunicorn's poller), eight request threads and the reporter thread compete for it.
* ``gthread-8-busy``: the same with one CPU-bound process running beside it during the
  load (a neighbour, as another worker or service on the same cores would be). With a core to
  itself the previous pipeline's reporter kept up; with a neighbour it dropped about a
  third of the spans, which is what issue 12 saw under gunicorn.

After the load the tracer is closed (``FALCON_TRACING_SHUTDOWN_TIMEOUT``, 5 s), then the
figures are: spans **made** (reported to the reporter), **delivered** (counted by the
sink), **dropped** (the reporter's count: queue full or closed) and the reporter's own
accounting, which must add up (``queued + sent + dropped + failed = made``).

``--quick`` runs each scenario briefly (0.5 s; the gunicorn ones 2 s) and fails on a
crash or an accounting error, and for the gunicorn scenarios also when fewer than 99.5 %
of the spans made were delivered: they are the deployment case, so CI's smoke run
(``run.py --quick``) catches a tracer that drops spans under gunicorn. A full run judges
>= 99.5 % delivered per scenario.

Run: ``python benchmarks/bench_delivery.py [--seconds 3] [--quick] [--load wrk|python]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from _common import HERE, PYTHON, ROOT, Sink, table, verdict

#: name -> (threads, child spans per request, CPU work per request in microseconds)
SCENARIOS = {
    'cpu-1': (1, 0, 100),
    'cpu-4': (4, 0, 100),
    'cpu-8': (8, 0, 100),
    'children-4': (4, 30, 0),
    'tight-1': (1, 0, 0),
}
#: name -> (gunicorn threads, child spans per request, CPU-bound neighbour processes):
#: a real gunicorn gthread worker.
GUNICORN_SCENARIOS = {
    'gthread-8': (8, 30, 0),
    'gthread-8-busy': (8, 30, 1),
}
ALL_SCENARIOS = (*SCENARIOS, *GUNICORN_SCENARIOS)
BUDGET_DELIVERED = 0.995
#: The gunicorn scenarios' shortest run: the server's start is not part of it, but wrk
#: counts whole seconds and a second is too few requests to judge delivery.
GUNICORN_MIN_SECONDS = 2.0


def _child(threads: int, children: int, work_us: int, seconds: float) -> dict[str, Any]:
    """Runs in the scenario's process: load, close, and the counters."""
    import threading

    import opentracing

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import apps
    from bench_inprocess import _environ, _start_response
    from falcon_tracing_wsgi import wrap

    loops = _calibrate(work_us)

    class Work:
        def on_get(self, req: Any, resp: Any, user_id: str) -> None:
            tracer = opentracing.global_tracer()
            for index in range(children):
                with tracer.start_active_span('db.query') as scope:
                    scope.span.set_tag('db.statement', 'SELECT 1')
                    scope.span.set_tag('db.row', index)
            total = 0
            for value in range(loops):
                total += value
            resp.media = {'user_id': user_id, 'total': total}

    falcon_app = apps.make_app()
    falcon_app.add_route('/work/{user_id}', Work())
    app = wrap(falcon_app)
    tracer = opentracing.global_tracer()
    reporter = tracer.reporter  # type: ignore[attr-defined]
    base = _environ('/work/42')
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def run(slot: int) -> None:
        made = 0
        while time.perf_counter() < stop:
            for _ in range(20):
                body = app(dict(base), _start_response)
                for _ in body:
                    pass
                body.close()  # PEP 3333: this finishes (and reports) the server span
                made += 1
        counts[slot] = made

    workers = [threading.Thread(target=run, args=(slot,)) for slot in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    during = reporter.stats()
    tracer.close()
    after = reporter.stats()
    made = after['queued'] + after['sent'] + after['dropped'] + after['failed']
    return {'requests': sum(counts), 'elapsed': elapsed, 'during': during, 'after': after,
            'made': made}


def _calibrate(work_us: int) -> int:
    """Loop iterations that take about ``work_us`` microseconds here."""
    if work_us <= 0:
        return 0
    loops = 100_000
    start = time.perf_counter()
    total = 0
    for value in range(loops):
        total += value
    per_loop = (time.perf_counter() - start) / loops
    return max(1, int(work_us / 1e6 / per_loop))


def run(seconds: float = 3.0, names: tuple[str, ...] = ALL_SCENARIOS,
        load: str = 'auto') -> dict[str, Any]:
    """Every scenario in ``names``, in order, against one sink.

    ``load``: the gunicorn scenarios' load generator (``auto``: wrk when installed).
    """
    results: dict[str, Any] = {}
    with Sink() as sink:
        for name in names:
            if name in GUNICORN_SCENARIOS:
                results[name] = _run_gunicorn(name, max(seconds, GUNICORN_MIN_SECONDS), sink,
                                              load)
                continue
            threads, children, work_us = SCENARIOS[name]
            before = sink.counts()['spans']
            env = {**{k: v for k, v in os.environ.items()
                      if not k.startswith(('FALCON_TRACING_', 'OTEL_'))},
                   'FALCON_TRACING_SERVICE_NAME': 'delivery',
                   'FALCON_TRACING_ZIPKIN_URL': sink.url}
            code = (f'import sys, json; sys.path.insert(0, {str(HERE)!r}); '
                    f'import bench_delivery as b; '
                    f'print(json.dumps(b._child({threads}, {children}, {work_us}, '
                    f'{seconds})))')
            done = subprocess.run([PYTHON, '-c', code], env=env, capture_output=True,
                                  text=True, timeout=seconds * 10 + 60, cwd=str(ROOT))
            if done.returncode != 0:
                raise RuntimeError(f'scenario {name} failed:\n{done.stderr}')
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures['delivered'] = sink.wait_for(before + figures['after']['sent'],
                                                 10.0)['spans'] - before
            results[name] = figures
    return results


def _run_gunicorn(name: str, seconds: float, sink: Sink, load: str) -> dict[str, Any]:
    """A gunicorn scenario: serve, load, stop (the exit hook flushes), then count."""
    from bench_e2e import Gunicorn, load_name, run_load, wrk_chosen

    threads, children, neighbours = GUNICORN_SCENARIOS[name]
    wrk = wrk_chosen(load)
    before = sink.counts()['spans']
    server = Gunicorn('traced_children', sink, workers=1, worker_class='gthread',
                      threads=threads, hooks=True)
    try:
        with server:
            # Bounded: each neighbour ends on its own after the load's time and a margin.
            busy = [subprocess.Popen([PYTHON, '-c', _NEIGHBOUR, str(seconds + 30)])
                    for _ in range(neighbours)]
            try:
                loaded = run_load(server.port, seconds, wrk)
            finally:
                for process in busy:
                    process.kill()
                    process.wait(10)
        workers = server.worker_figures()
        summaries = [line.split('falcon-tracing-wsgi: ', 1)[1]
                     for line in server.log().splitlines()
                     if 'falcon-tracing-wsgi: worker' in line]
    finally:
        server.cleanup()
    if not workers or any('reporter' not in figures for figures in workers):
        raise RuntimeError(f'{name}: a gunicorn worker wrote no reporter figures at exit '
                           f'({workers})')
    after = {key: sum(int(figures['reporter'][key]) for figures in workers)
             for key in ('queued', 'sent', 'dropped', 'failed')}
    answered = sum(int(figures['answered']) for figures in workers)
    made = answered * (1 + children)
    # wrk runs whole seconds; the span counts include the readiness probe's request.
    elapsed = max(1, round(seconds)) if wrk else seconds
    return {'requests': answered, 'elapsed': elapsed, 'after': after, 'made': made,
            'accounted': sum(after.values()), 'load': load_name(wrk),
            'load_requests': loaded['requests'], 'load_errors': loaded['errors'],
            'summaries': summaries,
            'delivered': sink.wait_for(before + after['sent'], 10.0)['spans'] - before}


#: A CPU-bound neighbour process: spins until its time (argv[1], seconds) is up.
_NEIGHBOUR = ('import sys, time\n'
              'end = time.monotonic() + float(sys.argv[1])\n'
              'while time.monotonic() < end:\n'
              '    sum(range(10_000))\n')


def problems(results: dict[str, Any]) -> list[str]:
    """Accounting errors (what must hold at any speed), and the gunicorn scenarios' drops."""
    out = []
    for name, figures in results.items():
        after = figures['after']
        if after['queued'] != 0:
            out.append(f'{name}: {after["queued"]} spans still queued after close()')
        if figures['delivered'] != after['sent']:
            out.append(f'{name}: the sink counted {figures["delivered"]} spans, the reporter '
                       f'says {after["sent"]} were sent')
        if name not in GUNICORN_SCENARIOS:
            continue
        if figures['accounted'] != figures['made']:
            out.append(f'{name}: {figures["requests"]} requests answered make '
                       f'{figures["made"]} spans, the reporter accounted for '
                       f'{figures["accounted"]}')
        if figures['delivered'] < BUDGET_DELIVERED * figures['made']:
            out.append(f'{name}: {figures["delivered"]} of {figures["made"]} spans delivered '
                       f'({_percent(figures)}; at least {BUDGET_DELIVERED:.1%} must be), '
                       f'{after["dropped"]} dropped, {after["failed"]} failed')
    return out


def _percent(figures: dict[str, Any]) -> str:
    made = figures['made']
    return f'{100.0 * figures["delivered"] / made:.2f} %' if made else '-'


def format_summary(results: dict[str, Any], judge_budgets: bool = True) -> str:
    rows = []
    for name, figures in results.items():
        if name in GUNICORN_SCENARIOS:
            threads, children, _ = GUNICORN_SCENARIOS[name]
            work_us = 0
        else:
            threads, children, work_us = SCENARIOS[name]
        made, delivered = figures['made'], figures['delivered']
        after = figures['after']
        rows.append([name, threads, children, work_us, made, made / figures['elapsed'],
                     delivered, after['dropped'], after['failed'], _percent(figures)])
    out = ['Delivery under load, default settings, the counting sink as collector '
           '(in-process scenarios: one process; gthread: a real gunicorn worker)', '',
           table(['scenario', 'threads', 'children', 'work us', 'spans made', 'made/s',
                  'delivered', 'dropped', 'failed', 'delivered %'], rows)]
    for name, figures in results.items():
        if name in GUNICORN_SCENARIOS:
            threads, children, neighbours = GUNICORN_SCENARIOS[name]
            beside = (f', {neighbours} CPU-bound process{"es" if neighbours > 1 else ""} '
                      f'beside' if neighbours else '')
            out.append(f'  {name}: gunicorn -w 1 -k gthread --threads {threads} with the '
                       f'package\'s hooks, GET /hello with {children} child spans{beside}, '
                       f'load: {figures["load"]} for {figures["elapsed"]:g} s; spans made = '
                       f'{figures["requests"]:,} requests answered x {1 + children} '
                       f'(the load generator counted {figures["load_requests"]:,}, '
                       f'{figures["load_errors"]} errors)')
            for line in figures['summaries']:
                out.append(f'    exit hook: {line}')
    if judge_budgets:
        worst = min((f['delivered'] / f['made'] for f in results.values() if f['made']),
                    default=1.0)
        out.append(f'  budget: >= {BUDGET_DELIVERED:.1%} delivered in every scenario '
                   f'(worst {worst:.2%}): {verdict(worst >= BUDGET_DELIVERED)}')
    for line in problems(results):
        out.append('  FAILED: ' + line)
    return '\n'.join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--seconds', type=float, default=3.0)
    parser.add_argument('--quick', action='store_true',
                        help='0.5 s per scenario (the gunicorn one 2 s)')
    parser.add_argument('--only', nargs='*', choices=sorted(ALL_SCENARIOS))
    parser.add_argument('--load', choices=('auto', 'wrk', 'python'), default='auto',
                        help='the gunicorn scenarios\' load generator (auto: wrk when '
                             'installed)')
    parser.add_argument('--json', help='write the result as JSON to this file')
    args = parser.parse_args()
    results = run(0.5 if args.quick else args.seconds, tuple(args.only or ALL_SCENARIOS),
                  args.load)
    print(format_summary(results, not args.quick))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(results, out, indent=1)
    return 1 if problems(results) else 0


if __name__ == '__main__':
    sys.exit(main())
