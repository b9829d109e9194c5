"""In-process per-request cost: the app called through WSGI, no server, no sockets.

Method (the one the baseline measurements used, so the figures compare):

* The environ is ``wsgiref.util.setup_testing_defaults`` plus ``Host``, ``User-Agent``,
  ``Accept``, ``REMOTE_ADDR`` and ``REMOTE_PORT`` (what gunicorn provides), shallow-copied
  for every request. No trace headers come in: every request starts a new trace.
* The timed unit is ``app(environ, start_response)``, iterating the body and ``close()``,
  timed with one ``perf_counter_ns`` pair per request. GC stays on.
* Each variant runs in **its own fresh subprocess** per round: ``warmup`` requests per
  route, ``gc.collect()``, then ``requests`` timed requests per route (``/hello``, then
  ``/users/42``). Rounds rotate the variant order, so drift of the machine spreads over
  all variants; the table shows the **median over rounds** of each round's figures.
* **Process CPU per request** is ``time.process_time()`` (every thread of the process)
  from the first timed request until the exporter has flushed everything, divided by the
  timed requests: background export (encoding and HTTP on the reporter's thread, or the
  OpenTelemetry BatchSpanProcessor's) is counted, not hidden in another thread.
* Exporting variants post to the counting sink (``sink.py``, a separate process). After
  each run the spans the sink received are compared with the requests made (warm-up
  included); any difference is reported as lost and fails the run.

Run: ``python benchmarks/bench_inprocess.py [--rounds 5] [--requests 20000] [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from array import array
from typing import Any, Optional

from apps import OTLP_VARIANTS, VARIANT_ENV
from _common import HERE, PYTHON, ROOT, Sink, median, otel_available, table, verdict

ROUTES = ('/hello', '/users/42')
#: No variant gets settings of its own: the exporting variant runs at the defaults. (It
#: used to need batches of 512 and a queue of 8,192: this loop never releases the GIL, and
#: the old reporter thread fell behind; since the pipeline batches by bytes and the
#: request thread helps encode when the worker falls behind, see bench_delivery.py, the
#: defaults deliver every span.)
_INPROCESS_ENV: dict[str, dict[str, str]] = {}
#: Budgets (issue 5): overhead over bare Falcon in us per request.
BUDGET_SAMPLED_US = 5.0
#: Variants whose spans are checked: True = one span per request, False = none at all.
_EXPECTED_SPANS = {'traced': True, 'otel': True, 'otel_zipkin': True, 'unsampled': False,
                   'excluded': False, 'traced_otlp': True, 'traced_otlp_json': True}
#: Issue 13: a sampled request exported as OTLP costs at most this much more than Zipkin's.
BUDGET_OTLP_OVER_ZIPKIN = 0.10
BUDGET_UNSAMPLED_US = 1.0
BUDGET_OTEL_RATIO = 20.0


def _environ(path: str) -> dict[str, Any]:
    from wsgiref.util import setup_testing_defaults
    environ: dict[str, Any] = {
        'PATH_INFO': path, 'HTTP_HOST': 'localhost:8000',
        'HTTP_USER_AGENT': 'bench/1.0', 'HTTP_ACCEPT': 'application/json',
        'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '54321',
    }
    setup_testing_defaults(environ)
    return environ


def _start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
    return None


def _run_route(app: Any, path: str, count: int, times: Optional[array]) -> None:
    base = _environ(path)
    perf = time.perf_counter_ns
    sr = _start_response
    for _ in range(count):
        environ = base.copy()
        start = perf()
        result = app(environ, sr)
        for _chunk in result:
            pass
        close = getattr(result, 'close', None)
        if close is not None:
            close()
        if times is not None:
            times.append(perf() - start)


def child(variant: str, requests: int, warmup: int) -> dict[str, Any]:
    """Run one variant in this process; return its figures."""
    from apps import build
    app, finish = build(variant)
    for path in ROUTES:
        _run_route(app, path, warmup, None)
    gc.collect()
    per_route = {}
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for path in ROUTES:
        times = array('q')
        _run_route(app, path, requests, times)
        ordered = sorted(times)
        per_route[path] = {'mean_us': sum(times) / len(times) / 1000,
                           'median_us': ordered[len(ordered) // 2] / 1000,
                           'p99_us': ordered[int(len(ordered) * 0.99)] / 1000}
    loop_wall = time.perf_counter() - wall0
    exported = finish(30.0)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    total = requests * len(ROUTES)
    return {'variant': variant, 'routes': per_route,
            'cpu_us': cpu / total * 1e6, 'wall_us': wall / total * 1e6,
            'loop_wall_us': loop_wall / total * 1e6,
            'exported': exported, 'requests_made': (requests + warmup) * len(ROUTES),
            'max_rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _spawn(variant: str, requests: int, warmup: int, sink: Sink) -> dict[str, Any]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(('FALCON_TRACING_', 'OTEL_')):
            del env[key]
    env.update({'FALCON_TRACING_SERVICE_NAME': 'bench', 'FALCON_TRACING_ZIPKIN_URL': sink.url,
                'BENCH_SINK_URL': sink.url, 'OTEL_SERVICE_NAME': 'bench',
                'PYTHONPATH': os.pathsep.join([str(HERE), str(ROOT)])})
    if variant in OTLP_VARIANTS:
        env['OTEL_EXPORTER_OTLP_ENDPOINT'] = f'http://127.0.0.1:{sink.port}'
    env.update(VARIANT_ENV.get(variant, {}))
    env.update(_INPROCESS_ENV.get(variant, {}))
    before = sink.counts()['spans']
    proc = subprocess.run(
        [PYTHON, str(HERE / 'bench_inprocess.py'), '--child', variant,
         '--requests', str(requests), '--warmup', str(warmup)],
        env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f'variant {variant} crashed:\n{proc.stderr[-4000:]}')
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = _EXPECTED_SPANS.get(variant)
    if expected is None:
        result['expected'] = result['received'] = None
    elif variant == 'otel':
        # A discarding exporter: what it was handed is what was delivered.
        result['expected'] = result['requests_made']
        result['received'] = result['exported']
    else:
        result['expected'] = result['requests_made'] if expected else 0
        counts = sink.wait_for(before + result['expected'], 10.0) if expected \
            else sink.counts()
        result['received'] = counts['spans'] - before
    return result


def run(rounds: int = 5, requests: int = 20_000, warmup: int = 3_000,
        variants: Optional[list[str]] = None) -> dict[str, Any]:
    """Run every variant ``rounds`` times, interleaved; return the summary."""
    from apps import OTEL_VARIANTS, VARIANTS
    names = list(variants or [name for name in VARIANTS if name != 'traced_noexport'])
    skipped = []
    if not otel_available():
        skipped = [name for name in names if name in OTEL_VARIANTS]
        names = [name for name in names if name not in OTEL_VARIANTS]
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with Sink() as sink:
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                print(f'  round {round_number + 1}/{rounds}: {name} ...', file=sys.stderr,
                      flush=True)
                raw[name].append(_spawn(name, requests, warmup, sink))
    return summarise(raw, skipped, rounds, requests, warmup)


def summarise(raw: dict[str, list[dict[str, Any]]], skipped: list[str], rounds: int,
              requests: int, warmup: int) -> dict[str, Any]:
    rows = {}
    lost = []
    for name, results in raw.items():
        row: dict[str, Any] = {}
        for path in ROUTES:
            for key in ('mean_us', 'median_us', 'p99_us'):
                row[f'{path} {key}'] = median([r['routes'][path][key] for r in results])
        row['mean_us'] = median([sum(r['routes'][p]['mean_us'] for p in ROUTES) / len(ROUTES)
                                 for r in results])
        row['median_us'] = median([sum(r['routes'][p]['median_us'] for p in ROUTES)
                                   / len(ROUTES) for r in results])
        row['cpu_us'] = median([r['cpu_us'] for r in results])
        row['wall_us'] = median([r['wall_us'] for r in results])
        row['mean_us_rounds'] = [round(sum(r['routes'][p]['mean_us'] for p in ROUTES)
                                       / len(ROUTES), 2) for r in results]
        row['max_rss_mb'] = median([r['max_rss_kb'] for r in results]) / 1024
        delivered = [r['received'] for r in results]
        made = [r['expected'] for r in results]
        row['spans'] = None if delivered[0] is None else f'{sum(delivered)}/{sum(made)}'
        if delivered[0] is not None and delivered != made:
            lost.append(f'{name}: {delivered} spans for {made} requests')
        rows[name] = row
    summary: dict[str, Any] = {'rows': rows, 'skipped': skipped, 'lost': lost,
                               'rounds': rounds, 'requests': requests, 'warmup': warmup}
    bare = rows.get('bare')
    if bare is not None:
        for row in rows.values():
            for key in ('mean_us', 'median_us', 'cpu_us'):
                row['over_' + key] = row[key] - bare[key]
    ours = rows.get('traced')
    if ours is not None and bare is not None:
        for name in ('otel', 'otel_zipkin'):
            if name in rows:
                for key in ('mean_us', 'cpu_us'):
                    summary[f'ratio_{name}_{key}'] = (rows[name]['over_' + key]
                                                      / max(ours['over_' + key], 0.05))
    return summary


def format_summary(summary: dict[str, Any], judge_budgets: bool = True) -> str:
    from apps import VARIANTS
    rows = summary['rows']
    headers = ['variant', '/hello mean', '/hello median', '/users mean', '/users median',
               'CPU/req', 'overhead mean', 'overhead median', 'overhead CPU', 'p99 /hello',
               'spans sent/requests']
    body = []
    for name, row in rows.items():
        body.append([name, row['/hello mean_us'], row['/hello median_us'],
                     row['/users/42 mean_us'], row['/users/42 median_us'], row['cpu_us'],
                     _signed(row.get('over_mean_us')), _signed(row.get('over_median_us')),
                     _signed(row.get('over_cpu_us')), row['/hello p99_us'], row['spans']])
    out = [f'In-process, us per request: median of {summary["rounds"]} interleaved rounds x '
           f'{summary["requests"]:,} requests per route (fresh process per variant and round; '
           f'CPU/req includes background export and the final flush)', '',
           table(headers, body), '']
    for name in rows:
        out.append(f'  {name:<12} {VARIANTS[name]}; round means {rows[name]["mean_us_rounds"]}')
    for name in summary['skipped']:
        out.append(f'  {name:<12} skipped: OpenTelemetry packages not installed '
                   "(pip install -e '.[bench]')")
    judged = judge(summary) if judge_budgets else []
    if judged:
        out.append('')
        out.extend(judged)
    for line in summary['lost']:
        out.append('  SPANS LOST: ' + line)
    return '\n'.join(out)


def judge(summary: dict[str, Any]) -> list[str]:
    rows = summary['rows']
    out = []
    if 'traced' in rows and 'bare' in rows:
        over = max(rows['traced']['over_mean_us'], rows['traced']['over_cpu_us'])
        out.append(f'  budget: sampled+exported overhead <= {BUDGET_SAMPLED_US} us '
                   f'(mean {rows["traced"]["over_mean_us"]:+.1f}, CPU '
                   f'{rows["traced"]["over_cpu_us"]:+.1f}): {verdict(over <= BUDGET_SAMPLED_US)}')
    for name in ('unsampled', 'excluded'):
        if name in rows and 'bare' in rows:
            over = max(rows[name]['over_mean_us'], rows[name]['over_cpu_us'])
            out.append(f'  budget: {name} overhead <= {BUDGET_UNSAMPLED_US} us '
                       f'(mean {rows[name]["over_mean_us"]:+.1f}, CPU '
                       f'{rows[name]["over_cpu_us"]:+.1f}): '
                       f'{verdict(over <= BUDGET_UNSAMPLED_US)}')
    for name in OTLP_VARIANTS:
        # The request path is the same for every reporter (report() appends to a queue);
        # the wire format only changes the worker's encoding, which CPU/req counts. The
        # median is the request path without the GIL waits a loaded machine adds to means.
        if name in rows and 'traced' in rows and 'bare' in rows:
            ours = rows['traced']
            median = rows[name]['over_median_us'] / max(ours['over_median_us'], 0.05) - 1
            cpu = rows[name]['over_cpu_us'] / max(ours['over_cpu_us'], 0.05) - 1
            mean = rows[name]['over_mean_us'] / max(ours['over_mean_us'], 0.05) - 1
            out.append(f'  budget: {name} overhead within {BUDGET_OTLP_OVER_ZIPKIN:.0%} of '
                       f'traced (Zipkin) (CPU {cpu:+.1%}, median {median:+.1%}; mean '
                       f'{mean:+.1%}): {verdict(max(median, cpu) <= BUDGET_OTLP_OVER_ZIPKIN)}')
    for name in ('otel', 'otel_zipkin'):
        key = f'ratio_{name}_mean_us'
        if key in summary:
            ratio = summary[key]
            cpu = summary[f'ratio_{name}_cpu_us']
            out.append(f'  ratio: {name} overhead / ours = {ratio:.1f} (mean), {cpu:.1f} (CPU)'
                       f'; budget >= {BUDGET_OTEL_RATIO:.0f}: '
                       f'{verdict(min(ratio, cpu) >= BUDGET_OTEL_RATIO)}')
    return out


def _signed(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:+.1f}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--requests', type=int, default=20_000)
    parser.add_argument('--warmup', type=int, default=3_000)
    parser.add_argument('--variants', help='comma list (default: all)')
    parser.add_argument('--quick', action='store_true', help='1 round x 1,000 requests')
    parser.add_argument('--json', help='write the summary as JSON to this file')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.warmup)))
        return 0
    if args.quick:
        args.rounds, args.requests, args.warmup = 1, 1_000, 200
    summary = run(args.rounds, args.requests, args.warmup,
                  args.variants.split(',') if args.variants else None)
    print(format_summary(summary, not args.quick))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(summary, out, indent=1)
    return 1 if summary['lost'] else 0


if __name__ == '__main__':
    sys.exit(main())
