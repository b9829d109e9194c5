"""Instructions per request, counted by valgrind's callgrind: bare Falcon, this package,
OpenTelemetry, side by side.

Why instructions: on a shared machine wall time and CPU time move with the neighbours'
load, instruction counts repeat (to a few hundred per request), and gunicorn's
throughput follows them (the project's baseline: ``bare / (bare + overhead)`` with the
worker's ~563k instructions per request, server included, as ``bare``).

Method:

* The app and environ are ``bench_inprocess.py``'s: ``GET /hello`` and ``GET /users/42``
  called in-process through WSGI, body iterated and ``close()`` called, no trace
  headers coming in (every request starts a new trace).
* Each variant runs in a fresh ``valgrind --tool=callgrind`` process **twice**: ``warmup``
  requests per route, then ``short`` requests per route in one run and ``long`` in the
  other, then the variant's final flush. Per request::

      (Ir(long) - Ir(short)) / (2 * (long - short))

  Start-up, imports, warm-up, the flush's fixed part and interpreter exit are in both
  runs and cancel. Every thread of the process runs under callgrind, so the exporters'
  worker threads (encoding, HTTP) and the final flush of the extra spans are counted.
* The collector (``sink.py``) is another process started before valgrind and outside it
  (``--trace-children=no``), so its instructions are not counted. After each run the
  spans it received must equal the requests made (warm-up included): a difference is
  reported as lost spans and fails the run. Unsampled and excluded variants must send
  none.
* Settings are the defaults (a queue of 65,536 spans and 16 MiB, sends by bytes): a run
  makes at most ``2 * (warmup + long)`` spans, kept under 2,048 (the queue size of an
  earlier version, kept as the runs' bound) so the queue cannot overflow however the
  worker thread is scheduled. ``PYTHONHASHSEED=0`` so dict layouts, and with them the
  counts, repeat from run to run.
* The GIL switch interval is 30 s (``sys.setswitchinterval``, ``--switch-interval``):
  the request loop never blocks, so with Python's 5 ms the count would depend on how
  often the interpreter forces the GIL from the request thread to an exporter's thread,
  which follows wall time under callgrind and varied the sampled figure by +-3% from
  run to run. With 30 s the exporter's thread works when the loop waits for the final
  flush: the same spans encoded and posted in the same batches, counted once, without
  the forced hand-offs (a real server releases the GIL at every socket call, so it
  pays few of them; ``--switch-interval 0`` keeps Python's default to see them).
* **Python calls per request** (a second figure, measured natively, not under valgrind):
  the same two run lengths with ``sys.setprofile``/``threading.setprofile`` counting
  Python-level calls (``call`` events, generator resumptions included) in every thread,
  in all and in the package's modules.

Budgets (issue 15), instructions over bare per request: sampled + exported <= 60k,
unsampled <= 20k (both unsampled rows: a rate of 0, whose decision is a constant, and a
sampling rate, whose decision is the sampler's, as in production), excluded <= 2k.
They are printed beside the figures, never asserted: only lost spans or a crash fail
the run. The floor of each path, the same job written as cheaply as Python allows, is
``floor.py``'s (the ``floor_*`` variants; ``bench_parts.py`` counts them part by part).

``--breakdown`` measures the sampled + Zipkin request stage by stage (each variant adds
one stage to the previous one, see ``apps.EXTRA_VARIANTS``) and prints where its
instructions go: the span itself, the rest of the WSGI wrapper, the Falcon component,
encoding, the reporter's queue/thread/batching, HTTP.

Run: ``python benchmarks/bench_instructions.py [--quick] [--breakdown] [--jobs 2]``.
Needs ``valgrind`` (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from _common import (HERE, PYTHON, ROOT, Sink, otel_available, otel_otlp_available, table,
                     verdict)

ROUTES = ('/hello', '/users/42')
#: Main table, in order.
DEFAULT_VARIANTS = ('bare', 'traced', 'traced_otlp', 'traced_otlp_old_names', 'unsampled',
                    'unsampled_rate', 'excluded', 'otel_zipkin', 'otel_otlp')
QUICK_VARIANTS = ('bare', 'traced', 'traced_otlp', 'unsampled', 'unsampled_rate', 'excluded')
#: The breakdown's stages: each adds one part to the one before it (the name of the part).
BREAKDOWN = (
    ('bare', None),
    ('bare_plain', None),
    ('span_only', 'span: started and finished (OpenTracing API, no tags, no reporter)'),
    ('core_noexport', 'the rest of the WSGI wrapper: tags, headers, scope, response, '
                      'start_response, finish'),
    ('traced_noexport', 'Falcon component: hooks, route, rename'),
    ('traced_encode', 'encoding: Zipkin v2 JSON of each span'),
    ('traced_discard', 'reporter: report(), queue, worker thread, batches, framing'),
    ('traced', 'HTTP: POSTs to the collector on loopback'),
)
#: Also measured by ``--breakdown``: the unsampled and excluded requests with and without
#: the Falcon component.
BREAKDOWN_OTHERS = ('unsampled', 'unsampled_plain', 'excluded', 'excluded_plain')
#: Budgets over bare, instructions per request (issue 15).
BUDGETS = {'traced': 60_000, 'traced_otlp': 60_000, 'unsampled': 20_000,
           'unsampled_rate': 20_000, 'excluded': 2_000}
#: Spans each variant must deliver: 'sink' (the collector received one per request),
#: 'none' (the collector received none), 'handed' (the variant's own discarding end
#: counted one per request). Absent: not checked (the variant reports nothing).
_SPAN_CHECK = {'traced': 'sink', 'traced_otlp': 'sink', 'traced_otlp_old_names': 'sink',
               'floor': 'sink', 'floor_kept': 'sink', 'floor_complete': 'sink',
               'otel_zipkin': 'sink', 'otel_otlp': 'sink',
               'unsampled': 'none', 'unsampled_health_rule': 'none',
               'excluded': 'none', 'unsampled_plain': 'none', 'excluded_plain': 'none',
               'floor_unsampled': 'none', 'floor_excluded': 'none', 'unsampled_rate': 'none',
               'otel': 'handed', 'traced_encode': 'handed',
               'traced_discard': 'handed'}
#: (warmup, short, long) requests per route. Full: 1,100 requests measured; quick: 100.
FULL_SIZES = (50, 100, 650)
QUICK_SIZES = (10, 20, 70)
#: GIL switch interval in the measured processes, seconds (0: Python's default, 5 ms).
SWITCH_INTERVAL = 30.0
#: A run makes fewer spans than this, far below the default queue (see the module
#: docstring).
_QUEUE = 2048


# -- the child: one run of one variant --------------------------------------------------

def _environ(path: str) -> dict[str, Any]:
    from bench_inprocess import _environ as inprocess_environ
    return inprocess_environ(path)


def _start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
    return None


def child(variant: str, requests: int, warmup: int, count_calls: bool) -> dict[str, Any]:
    """Build ``variant``, run ``warmup + requests`` requests per route, flush; figures."""
    calls = {'all': 0, 'package': 0}
    interval = float(os.environ.get('BENCH_SWITCH_INTERVAL') or 0)
    if interval > 0:
        sys.setswitchinterval(interval)
    if count_calls:
        import threading
        marker = f'{os.sep}falcon_tracing_wsgi{os.sep}'

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == 'call':
                calls['all'] += 1
                if marker in frame.f_code.co_filename:
                    calls['package'] += 1
        threading.setprofile(profile)
        sys.setprofile(profile)
    from apps import build
    app, finish = build(variant)
    for count in (warmup, requests):
        for path in ROUTES:
            base = _environ(path)
            sr = _start_response
            for _ in range(count):
                result = app(base.copy(), sr)
                for _chunk in result:
                    pass
                close = getattr(result, 'close', None)
                if close is not None:
                    close()
    exported = finish(60.0)
    sys.setprofile(None)
    return {'variant': variant, 'exported': exported, 'calls': calls,
            'requests_made': (requests + warmup) * len(ROUTES)}


# -- the parent -------------------------------------------------------------------------

def valgrind() -> Optional[str]:
    """The valgrind executable, or None when it is not installed."""
    return shutil.which('valgrind')


def _base_env() -> dict[str, str]:
    """This environment without tracing settings, plus the benchmark's own."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('FALCON_TRACING_', 'OTEL_'))}
    env.update({'PYTHONHASHSEED': '0',
                'PYTHONPATH': os.pathsep.join([str(HERE), str(ROOT)])})
    return env


def _env(variant: str, sink: Sink, switch_interval: float) -> dict[str, str]:
    """The environment of one run of ``variant`` (its settings, the sink's URLs)."""
    from apps import OTLP_VARIANTS, VARIANT_ENV
    env = _base_env()
    env['BENCH_SWITCH_INTERVAL'] = str(switch_interval)
    env.update({'FALCON_TRACING_SERVICE_NAME': 'bench', 'FALCON_TRACING_ZIPKIN_URL': sink.url,
                'BENCH_SINK_URL': sink.url, 'BENCH_SINK_OTLP_URL': sink.otlp_url,
                'OTEL_SERVICE_NAME': 'bench'})
    if variant in OTLP_VARIANTS:
        env['FALCON_TRACING_OTLP_ENDPOINT'] = sink.otlp_url
        del env['FALCON_TRACING_ZIPKIN_URL']
    env.update(VARIANT_ENV.get(variant, {}))
    return env


def _callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(('totals:', 'summary:')):
            return int(line.split()[1])
    raise RuntimeError(f'no totals line in {path}')


class _Zygote:
    """A Python process under callgrind that imports once and forks one child per run.

    Python's start-up and imports cost ~450M instructions (8 s under callgrind); paid once
    here instead of once per run. Each run is a fork of it: the child's callgrind total
    includes everything before the fork, the same for every run, so it cancels in the
    difference of two runs like start-up does in fresh processes. No thread exists
    before the fork (the variants start theirs in the child).
    """

    def __init__(self, preload: list[str], directory: Path) -> None:
        self.directory = directory
        self.stderr = open(directory / f'zygote-{id(self)}.err', 'w+')
        env = _base_env()
        self.process = subprocess.Popen(
            [valgrind() or 'valgrind', '--tool=callgrind', '-q', '--trace-children=no',
             f'--callgrind-out-file={directory}/callgrind.%p', PYTHON,
             str(HERE / 'bench_instructions.py'), '--zygote', ','.join(preload)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            text=True)

    def run(self, variant: str, requests: int, warmup: int, env: dict[str, str],
            timeout: float = 1800.0) -> tuple[dict[str, Any], int]:
        """Run one child; return its figures and its callgrind instruction total."""
        assert self.process.stdin is not None and self.process.stdout is not None
        result_path = self.directory / f'result-{id(self)}.json'
        self.process.stdin.write(json.dumps({'variant': variant, 'requests': requests,
                                             'warmup': warmup, 'env': env,
                                             'result': str(result_path)}) + '\n')
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ''
        if not line:
            self.close()
            raise RuntimeError(f'variant {variant}: no answer from the callgrind process '
                               f'(timeout {timeout:.0f} s or crash):\n{self._stderr()}')
        answer = json.loads(line)
        if answer['status'] != 0:
            raise RuntimeError(f'variant {variant} crashed (exit {answer["status"]}):\n'
                               f'{self._stderr()}')
        out = self.directory / f'callgrind.{answer["pid"]}'
        instructions = _callgrind_total(out)
        out.unlink()
        return json.loads(result_path.read_text()), instructions

    def _stderr(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.stderr.close()


def zygote(preload: str) -> None:
    """``--zygote``: import ``preload``, then fork one child per task read from stdin."""
    import importlib
    import traceback
    for name in filter(None, preload.split(',')):
        importlib.import_module(name)
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        task = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.environ.clear()
                os.environ.update(task['env'])
                result = child(task['variant'], task['requests'], task['warmup'], False)
                Path(task['result']).write_text(json.dumps(result))
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                # NOTE: no interpreter exit: the variant's finish() already flushed, and
                # the zygote's stdin buffers must not be touched by the child.
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({'pid': pid, 'status': os.waitstatus_to_exitcode(status)}),
              flush=True)


def _check_spans(variant: str, result: dict[str, Any], sink: Sink) -> None:
    """Set ``expected`` and ``delivered`` spans in ``result`` (see ``_SPAN_CHECK``)."""
    check = _SPAN_CHECK.get(variant)
    made = result['requests_made']
    if check is None:
        result['expected'] = result['delivered'] = None
    elif check == 'handed':
        result['expected'], result['delivered'] = made, result['exported']
    else:
        result['expected'] = made if check == 'sink' else 0
        result['delivered'] = sink.wait_for(result['expected'], 10.0)['spans'] \
            if check == 'sink' else sink.counts()['spans']


def run_counted(zygote_process: _Zygote, variant: str, requests: int, warmup: int,
                switch_interval: float) -> dict[str, Any]:
    """One run of ``variant`` forked from a callgrind zygote: figures, instructions."""
    with Sink() as sink:
        result, instructions = zygote_process.run(variant, requests, warmup,
                                                  _env(variant, sink, switch_interval))
        result['instructions'] = instructions
        _check_spans(variant, result, sink)
    return result


def run_calls(variant: str, requests: int, warmup: int,
              switch_interval: float) -> dict[str, Any]:
    """One run of ``variant`` in a fresh native process, counting Python calls."""
    command = [PYTHON, str(HERE / 'bench_instructions.py'), '--child', variant,
               '--requests', str(requests), '--warmup', str(warmup), '--count-calls']
    with Sink() as sink:
        proc = subprocess.run(command, env=_env(variant, sink, switch_interval),
                              capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f'variant {variant} crashed:\n{proc.stderr[-4000:]}')
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        _check_spans(variant, result, sink)
    return result


#: Imported by the zygote before it forks (``apps`` imports Falcon).
_PRELOAD = ['apps', 'bench_inprocess', 'falcon_tracing_wsgi', 'falcon_tracing_wsgi.bootstrap']
_PRELOAD_OTEL = ['opentelemetry.sdk.trace', 'opentelemetry.sdk.trace.export',
                 'opentelemetry.instrumentation.wsgi', 'opentelemetry.exporter.zipkin.json']
_PRELOAD_OTEL_OTLP = ['opentelemetry.exporter.otlp.proto.http.trace_exporter']


def run(variants: Optional[list[str]] = None, sizes: tuple[int, int, int] = FULL_SIZES,
        jobs: int = 1, calls: bool = True,
        switch_interval: float = SWITCH_INTERVAL) -> dict[str, Any]:
    """Measure ``variants`` (default: the main table's); return the summary."""
    warmup, short, long = sizes
    if not 0 <= short < long:
        raise ValueError(f'need 0 <= short < long, got {short} and {long}')
    if 2 * (warmup + long) >= _QUEUE:
        raise ValueError(f'a run would make {2 * (warmup + long)} spans; the queue holds '
                         f'{_QUEUE} (lower --warmup or --long)')
    names = list(variants or DEFAULT_VARIANTS)
    skipped = {}
    for name in names:
        if name.startswith('otel') and not (otel_otlp_available() if name == 'otel_otlp'
                                            else otel_available()):
            skipped[name] = ("OpenTelemetry packages not installed "
                             "(pip install -e '.[bench]')")
    names = [name for name in names if name not in skipped]
    tasks = [(name, length, counted) for name in names for length in (short, long)
             for counted in ((True, False) if calls else (True,))]
    preload = _PRELOAD + (_PRELOAD_OTEL if any(n.startswith('otel') for n in names) else []) \
        + (_PRELOAD_OTEL_OTLP if 'otel_otlp' in names else [])
    with tempfile.TemporaryDirectory(prefix='bench-callgrind-') as tmp:
        zygotes: queue.Queue[_Zygote] = queue.Queue()
        started = [_Zygote(preload, Path(tmp)) for _ in range(max(1, jobs))]
        for process in started:
            zygotes.put(process)

        def one(task: tuple[str, int, bool]) -> dict[str, Any]:
            name, length, counted = task
            print(f'  {name}: {length} requests per route '
                  f'{"under callgrind" if counted else "counting Python calls"} ...',
                  file=sys.stderr, flush=True)
            if not counted:
                return run_calls(name, length, warmup, switch_interval)
            process = zygotes.get()
            try:
                return run_counted(process, name, length, warmup, switch_interval)
            finally:
                zygotes.put(process)
        try:
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                results = list(pool.map(one, tasks))
        finally:
            for process in started:
                process.close()
    raw: dict[str, dict[tuple[int, bool], dict[str, Any]]] = {name: {} for name in names}
    for (name, length, counted), result in zip(tasks, results):
        raw[name][(length, counted)] = result
    summary = summarise(raw, skipped, sizes)
    summary['switch_interval'] = switch_interval
    return summary


def summarise(raw: dict[str, dict[tuple[int, bool], dict[str, Any]]],
              skipped: dict[str, str], sizes: tuple[int, int, int]) -> dict[str, Any]:
    warmup, short, long = sizes
    per_request = 1 / (len(ROUTES) * (long - short))
    rows: dict[str, dict[str, Any]] = {}
    lost = []
    for name, runs in raw.items():
        row: dict[str, Any] = {
            'instructions': (runs[(long, True)]['instructions']
                             - runs[(short, True)]['instructions']) * per_request,
            'runs': {f'{length} {"callgrind" if counted else "calls"}': result
                     for (length, counted), result in runs.items()}}
        if (long, False) in runs:
            for key in ('all', 'package'):
                row[f'calls_{key}'] = (runs[(long, False)]['calls'][key]
                                       - runs[(short, False)]['calls'][key]) * per_request
        delivered = [r['delivered'] for r in runs.values()]
        made = [r['expected'] for r in runs.values()]
        row['spans'] = None if made[0] is None else f'{sum(delivered)}/{sum(made)}'
        if made[0] is not None and delivered != made:
            lost.append(f'{name}: {delivered} spans delivered for {made} expected')
        rows[name] = row
    bare = rows.get('bare')
    if bare is not None:
        for row in rows.values():
            row['over_bare'] = row['instructions'] - bare['instructions']
            row['ratio'] = row['instructions'] / bare['instructions']
    return {'rows': rows, 'skipped': skipped, 'lost': lost, 'warmup': warmup,
            'short': short, 'long': long}


def _k(value: Optional[float]) -> str:
    return '-' if value is None else f'{value / 1000:+,.1f}k'


def _interval(seconds: float) -> str:
    return f'{seconds:g} s' if seconds > 0 else "Python's default"


def format_summary(summary: dict[str, Any]) -> str:
    from apps import EXTRA_VARIANTS, VARIANTS
    descriptions = {**VARIANTS, **EXTRA_VARIANTS}
    rows = summary['rows']
    headers = ['variant', 'instructions/req', 'over bare', 'x bare', 'budget over bare',
               'Python calls/req (package)', 'spans delivered/made']
    body = []
    for name, row in rows.items():
        over = row.get('over_bare')
        budget = BUDGETS.get(name)
        budget_text = '-' if budget is None or over is None else \
            f'<= {budget / 1000:,.0f}k: {verdict(over <= budget)}'
        calls = '-' if 'calls_all' not in row else \
            f'{row["calls_all"]:.1f} ({row["calls_package"]:.1f})'
        body.append([name, round(row['instructions']),
                     '-' if name == 'bare' else _k(over),
                     '-' if 'ratio' not in row else f'{row["ratio"]:.2f}',
                     budget_text, calls, row['spans']])
    out = [f'Instructions per request (valgrind callgrind): (Ir({summary["long"]}) - '
           f'Ir({summary["short"]})) / {len(ROUTES) * (summary["long"] - summary["short"])}'
           f' requests, after {summary["warmup"]} warm-up requests per route; every thread '
           f'and the final flush counted, the collector in another process; GIL switch '
           f'interval {_interval(summary.get("switch_interval", 0))}', '',
           table(headers, body), '']
    for name in rows:
        out.append(f'  {name:<15} {descriptions[name]}')
    for name, why in summary['skipped'].items():
        out.append(f'  {name:<15} skipped: {why}')
    for line in summary['lost']:
        out.append('  SPANS LOST: ' + line)
    return '\n'.join(out)


def format_breakdown(summary: dict[str, Any]) -> str:
    """Where the sampled + Zipkin request's instructions over bare go, stage by stage."""
    rows = summary['rows']
    if any(name not in rows for name, _ in BREAKDOWN):
        missing = [name for name, _ in BREAKDOWN if name not in rows]
        return f'breakdown incomplete: {", ".join(missing)} not measured'
    total = rows['traced']['instructions'] - rows['bare']['instructions']
    total_calls = rows['traced'].get('calls_all', 0.0) - rows['bare'].get('calls_all', 0.0)
    body = []
    previous = 'bare_plain'
    for name, part in BREAKDOWN[2:]:
        before = rows[previous]
        now = rows[name]
        instructions = now['instructions'] - before['instructions']
        calls = now.get('calls_all', 0.0) - before.get('calls_all', 0.0)
        if name == 'traced_noexport':
            # The stage before wraps a plain function around the app; this one wraps the
            # app itself: add back that function's call, measured as bare_plain - bare.
            instructions += rows['bare_plain']['instructions'] - rows['bare']['instructions']
            calls += rows['bare_plain'].get('calls_all', 0.0) - rows['bare'].get('calls_all',
                                                                                   0.0)
        body.append([part, round(instructions), f'{instructions / total:.0%}',
                     f'{calls:+.1f}', f'{name} - {previous}'])
        previous = name
    body.append(['total: sampled + Zipkin over bare', round(total), '100%',
                 f'{total_calls:+.1f}', 'traced - bare'])
    out = [
        'Breakdown of the sampled + Zipkin request (instructions over bare per request; '
        'each part is one variant minus the one before it)', '',
        table(['part', 'instructions/req', 'share', 'Python calls/req', 'measured as'], body,
              'lrrrl'), '',
        f'  the plain function between the wrapper and the app (bare_plain - bare): '
        f'{rows["bare_plain"]["instructions"] - rows["bare"]["instructions"]:,.0f} '
        'instructions, added back to the Falcon component stage']
    if all(name in rows for name in BREAKDOWN_OTHERS):
        plain_call = rows['bare_plain']['instructions'] - rows['bare']['instructions']
        others = []
        for name in ('unsampled', 'excluded'):
            alone = rows[f'{name}_plain']['instructions'] - rows['bare_plain']['instructions']
            total_other = rows[name]['instructions'] - rows['bare']['instructions']
            others.append((alone, total_other - alone, total_other))
        out += ['', 'The unsampled and excluded requests (instructions over bare per request)',
                '', table(['part', 'unsampled', 'excluded', 'measured as'], [
                    ['the wrapper and the tracer', round(others[0][0]), round(others[1][0]),
                     'X_plain - bare_plain'],
                    ['the Falcon component (its hooks run on every request)',
                     round(others[0][1]), round(others[1][1]),
                     f'X - X_plain + {plain_call:,.0f}'],
                    ['total', round(others[0][2]), round(others[1][2]), 'X - bare']],
                    'lrrl')]
    return '\n'.join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--variants', help='comma list (default: ' +
                        ','.join(DEFAULT_VARIANTS) + ')')
    parser.add_argument('--breakdown', action='store_true',
                        help='also measure the sampled + Zipkin request stage by stage')
    parser.add_argument('--quick', action='store_true',
                        help=f'smoke mode: {QUICK_SIZES[2] - QUICK_SIZES[1]} requests per '
                             'route measured, no OpenTelemetry, no Python-call counts')
    parser.add_argument('--warmup', type=int, help=f'default {FULL_SIZES[0]}')
    parser.add_argument('--short', type=int, help=f'default {FULL_SIZES[1]}')
    parser.add_argument('--long', type=int, help=f'default {FULL_SIZES[2]}')
    parser.add_argument('--jobs', type=int, default=1,
                        help='valgrind processes at once (the counts do not depend on it)')
    parser.add_argument('--switch-interval', type=float, default=SWITCH_INTERVAL,
                        help='GIL switch interval in the measured processes, seconds '
                             f"(default {SWITCH_INTERVAL:g}; 0: Python's default)")
    parser.add_argument('--json', help='write the summary as JSON to this file')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--requests', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--count-calls', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--zygote', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.zygote is not None:
        zygote(args.zygote)
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.warmup, args.count_calls)))
        return 0
    if valgrind() is None:
        print('valgrind is not installed (apt-get install valgrind)', file=sys.stderr)
        return 2
    defaults = QUICK_SIZES if args.quick else FULL_SIZES
    sizes = (args.warmup if args.warmup is not None else defaults[0],
             args.short if args.short is not None else defaults[1],
             args.long if args.long is not None else defaults[2])
    if args.variants:
        names = args.variants.split(',')
    else:
        names = list(QUICK_VARIANTS if args.quick else DEFAULT_VARIANTS)
    if args.breakdown:
        names += [name for name in [name for name, _ in BREAKDOWN] + list(BREAKDOWN_OTHERS)
                  if name not in names]
    summary = run(names, sizes, args.jobs, calls=not args.quick,
                  switch_interval=args.switch_interval)
    print(format_summary(summary))
    if args.breakdown:
        print()
        print(format_breakdown(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str))
    return 1 if summary['lost'] else 0


if __name__ == '__main__':
    sys.exit(main())
