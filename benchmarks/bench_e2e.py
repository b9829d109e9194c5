"""End-to-end: gunicorn (``-w 2``, sync workers) on 127.0.0.1 under a load generator.

Method (the baseline's): ``gunicorn -w 2 -k sync`` (no preload, access log off) serves
``benchmarks/apps.py`` (variant from ``BENCH_VARIANT``) on a free loopback port; the
load generator is ``wrk -t2 -c32 --latency`` against ``GET /hello`` when ``wrk`` is
installed, else ``loadgen.py`` (2 processes, 32 connections); the table says which. A
warm-up run (not reported) comes first. Rounds interleave the variants, the order
rotated each round. Variants by default: ``bare``, ``traced`` (Zipkin), ``traced_otlp``
(OTLP/HTTP protobuf; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is the sink), ``unsampled`` and
``otel_zipkin``; ``--variants`` takes any name of ``apps.py``.

Reported per variant (median over rounds): requests per second and its ratio to bare,
the ratio within each round (the variant's req/s over the same round's bare: the spread
on a shared machine), issue 15's budget beside the sampled variants (>= 0.90 of bare),
p99 latency, **worker CPU per request** (``utime + stime`` of the worker processes from
``/proc/<pid>/stat`` across the measured run, divided by the requests wrk completed),
**worker peak RSS** (``VmHWM``, the larger of the two workers; the package's bytecode is
compiled first, as ``pip install`` does, see ``_compile_package``), and the span check:
after gunicorn stops (workers flush their exporters at exit), the spans the sink
received must equal the requests the workers answered (counted by ``gunicorn_conf.py``,
warm-up included). :class:`Gunicorn` starts and always stops the server; the gunicorn
scenario of ``bench_delivery.py`` uses it too.

Note: the load generator and the server share the machine's cores, and sync workers close
the connection after every response, so connect/accept costs are in every request.

``--set NAME=VALUE`` gives every variant's workers a setting on top of their own (to see
what one changes, e.g. ``FALCON_TRACING_FLUSH_INTERVAL=0.2``; the table's title names it).

Run: ``python benchmarks/bench_e2e.py [--rounds 3] [--duration 10] [--quick]``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from apps import CHILD_SPANS, EXTRA_VARIANTS, OTLP_VARIANTS, VARIANT_ENV, VARIANTS
from _common import HERE, PYTHON, ROOT, Sink, median, otel_available, table, verdict

from falcon_tracing_wsgi.demo.processes import free_port

#: The variants run by default (any name from apps.VARIANTS can be asked for).
DEFAULT_VARIANTS = ('bare', 'traced', 'traced_otlp', 'unsampled', 'otel_zipkin')
#: Variants whose spans the sink counts: name -> spans per request.
EXPORTING = {'traced': 1, 'traced_otlp': 1, 'traced_otlp_json': 1, 'traced_otlp_old_names': 1,
             'otel_zipkin': 1, 'otel_otlp': 1, 'traced_children': 1 + CHILD_SPANS}
#: Issue 15: a sampled, exported request keeps >= 0.90 of bare's throughput.
SAMPLED = ('traced', 'traced_otlp', 'traced_otlp_json', 'traced_otlp_old_names')
BUDGET_SAMPLED_RATIO = 0.90
#: Issue 5's earlier, stricter budget for the sampled Zipkin variant.
BUDGET_THROUGHPUT = 0.95
BUDGET_RSS_MB = 2.0
_TICK = os.sysconf('SC_CLK_TCK')


def _children(pid: int) -> list[int]:
    try:
        text = Path(f'/proc/{pid}/task/{pid}/children').read_text()
        return [int(p) for p in text.split()]
    except OSError:
        out = []
        for entry in Path('/proc').iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / 'stat').read_text()
                except OSError:
                    continue
                if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
        return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _hwm_kb(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    return 0


def run_load(port: int, duration: float, use_wrk: bool,
             path: str = '/hello') -> dict[str, Any]:
    """``wrk -t2 -c32`` (or ``loadgen.py``, the same shape) on ``path`` for ``duration``."""
    url = f'http://127.0.0.1:{port}{path}'
    if use_wrk:
        proc = subprocess.run(['wrk', '-t2', '-c32', f'-d{max(1, round(duration))}s',
                               '--latency', url],
                              capture_output=True, text=True, timeout=duration + 60)
        if proc.returncode != 0:
            raise RuntimeError(f'wrk failed: {proc.stderr}')
        return _parse_wrk(proc.stdout)
    proc = subprocess.run([PYTHON, str(HERE / 'loadgen.py'), '--port', str(port),
                           '--path', path, '--connections', '32', '--procs', '2',
                           '--duration', f'{duration:g}'],
                          capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f'loadgen failed: {proc.stderr}')
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def load_name(use_wrk: bool) -> str:
    """The load generator, as the tables name it."""
    if use_wrk:
        return 'wrk -t2 -c32 --latency'
    return ('loadgen.py (2 processes, 32 connections' +
            ('; wrk not installed)' if shutil.which('wrk') is None else ')'))


def wrk_chosen(load: str) -> bool:
    """Whether wrk generates the load, for ``--load`` ``auto``, ``wrk`` or ``python``.

    Raises:
        RuntimeError: ``wrk`` was asked for and is not installed.
    """
    installed = shutil.which('wrk') is not None
    if load == 'wrk' and not installed:
        raise RuntimeError('--load wrk: wrk is not installed (apt-get install wrk)')
    return installed if load == 'auto' else load == 'wrk'


_UNITS = {'us': 0.001, 'ms': 1.0, 's': 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r'([\d.]+)(us|ms|s)', text)
    if match is None:
        raise ValueError(f'unexpected wrk latency {text!r}')
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parse_wrk(out: str) -> dict[str, Any]:
    requests = int(re.search(r'(\d+) requests in', out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))  # type: ignore[union-attr]
    avg = _ms(re.search(r'Latency\s+(\S+)', out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r'\s50%\s+(\S+)', out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r'\s99%\s+(\S+)', out).group(1))  # type: ignore[union-attr]
    errors = 0
    for match in re.finditer(r'Socket errors: connect (\d+), read (\d+), write (\d+), '
                             r'timeout (\d+)', out):
        errors += sum(int(g) for g in match.groups())
    match = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if match:
        errors += int(match.group(1))
    return {'requests': requests, 'rps': rps, 'avg_ms': avg, 'p50_ms': p50, 'p99_ms': p99,
            'errors': errors}


class Gunicorn:
    """gunicorn serving ``apps.py``'s ``variant`` on a free port of 127.0.0.1.

    A context manager: entering starts it and waits until every worker answers (30 s at
    most), leaving always stops it (SIGTERM, then SIGKILL after 60 s). After it stopped,
    :meth:`worker_figures` holds what each worker wrote at exit (``gunicorn_conf.py``).

    Args:
        variant: a name from ``apps.VARIANTS`` or ``apps.EXTRA_VARIANTS``.
        sink: the collector every exporting variant posts to.
        workers: gunicorn's ``-w``.
        worker_class: gunicorn's ``-k`` (``sync``, ``gthread``).
        threads: gunicorn's ``--threads`` (``gthread``).
        hooks: also run the package's gunicorn hooks (``BENCH_TRACING_HOOKS``).
        settings: environment variables set on top of the variant's (``--set``), for
            example ``{'FALCON_TRACING_FLUSH_INTERVAL': '0.2'}``.
    """

    def __init__(self, variant: str, sink: Sink, workers: int = 2, worker_class: str = 'sync',
                 threads: int = 1, hooks: bool = False,
                 settings: Optional[dict[str, str]] = None) -> None:
        self.variant = variant
        self.sink = sink
        self.workers = workers
        self.worker_class = worker_class
        self.threads = threads
        self.hooks = hooks
        self.settings = dict(settings or {})
        self.port = 0
        self.worker_pids: list[int] = []
        self._master: Optional[subprocess.Popen[bytes]] = None
        self._dir = ''

    def __enter__(self) -> Gunicorn:
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix='bench-gunicorn-')
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('FALCON_TRACING_', 'OTEL_'))}
        env.update({'BENCH_GUNICORN': '1', 'BENCH_VARIANT': self.variant,
                    'BENCH_SINK_URL': self.sink.url, 'BENCH_SINK_OTLP_URL': self.sink.otlp_url,
                    'BENCH_COUNT_DIR': self._dir,
                    'BENCH_TRACING_HOOKS': '1' if self.hooks else '0',
                    'FALCON_TRACING_SERVICE_NAME': 'bench',
                    'FALCON_TRACING_ZIPKIN_URL': self.sink.url, 'OTEL_SERVICE_NAME': 'bench',
                    'PYTHONPATH': os.pathsep.join([str(HERE), str(ROOT)])})
        if self.variant in OTLP_VARIANTS:
            env['OTEL_EXPORTER_OTLP_ENDPOINT'] = f'http://127.0.0.1:{self.sink.port}'
        env.update(VARIANT_ENV.get(self.variant, {}))
        env.update(self.settings)
        command = [PYTHON, '-m', 'gunicorn', '-w', str(self.workers), '-k', self.worker_class,
                   '-b', f'127.0.0.1:{self.port}', '-c', str(HERE / 'gunicorn_conf.py'),
                   '--chdir', str(HERE)]
        if self.worker_class == 'gthread':
            command += ['--threads', str(self.threads)]
        with open(self.log_path, 'w') as log:
            self._master = subprocess.Popen(command + ['apps:app'], env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            self.worker_pids = _wait_ready(self._master, self.port, self.workers)
        except BaseException:
            self.stop()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        return self

    @property
    def log_path(self) -> str:
        """gunicorn's output (its error log, the package's summary lines)."""
        return os.path.join(self._dir, 'gunicorn.log')

    def stop(self) -> None:
        """SIGTERM and wait for the workers' exit hooks (SIGKILL after 60 s)."""
        master, self._master = self._master, None
        if master is None or master.poll() is not None:
            return
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(60)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(10)

    def worker_figures(self) -> list[dict[str, Any]]:
        """What each worker wrote at exit: ``answered`` (and ``reporter`` with hooks)."""
        return [json.loads(Path(self._dir, name).read_text())
                for name in os.listdir(self._dir) if name.isdigit()]

    def log(self) -> str:
        return Path(self.log_path).read_text(errors='replace')

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cleanup(self) -> None:
        """Remove the figures and the log (after :meth:`worker_figures`)."""
        shutil.rmtree(self._dir, ignore_errors=True)


def run_one(variant: str, sink: Sink, duration: float, warmup: float,
            use_wrk: bool, settings: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Start gunicorn for ``variant``, load it, stop it, check the spans."""
    before = sink.counts()['spans']
    server = Gunicorn(variant, sink, settings=settings)
    try:
        with server:
            run_load(server.port, warmup, use_wrk)
            cpu0 = sum(_cpu_seconds(pid) for pid in server.worker_pids)
            result = run_load(server.port, duration, use_wrk)
            cpu = sum(_cpu_seconds(pid) for pid in server.worker_pids) - cpu0
            result['worker_cpu_us'] = cpu / max(result['requests'], 1) * 1e6
            result['worker_hwm_kb'] = max(_hwm_kb(pid) for pid in server.worker_pids)
        answered = sum(figures['answered'] for figures in server.worker_figures())
    finally:
        server.cleanup()
    result['answered'] = answered
    if variant in EXPORTING:
        expected = answered * EXPORTING[variant]
        result['expected'] = expected
        result['received'] = sink.wait_for(before + expected, 15.0)['spans'] - before
    else:
        result['received'] = None
    return result


def _wait_ready(master: subprocess.Popen[bytes], port: int, workers: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f'gunicorn exited with {master.returncode}')
        try:
            with urllib.request.urlopen(f'http://127.0.0.1:{port}/hello', timeout=2) as resp:
                resp.read()
            pids = _children(master.pid)
            if len(pids) == workers:
                return pids
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError('gunicorn did not become ready within 30 s')


def _compile_package() -> None:
    """Write the package's bytecode, as ``pip install`` does.

    Falcon and OpenTelemetry come from wheels whose bytecode pip compiled at install; an
    editable checkout (or ``PYTHONDONTWRITEBYTECODE=1``) has none, so every worker would
    compile this package from source at import, and the compiler's memory would show in
    the worker's peak RSS (about 1.4 MB here) as if it were the package's.
    """
    compileall.compile_dir(str(ROOT / 'falcon_tracing_wsgi'), quiet=1)
    compileall.compile_dir(str(HERE), quiet=1, maxlevels=0)


def run(rounds: int = 3, duration: float = 10.0, warmup: float = 2.0,
        load: str = 'auto', variants: Optional[list[str]] = None,
        settings: Optional[dict[str, str]] = None) -> dict[str, Any]:
    _compile_package()
    wrk = wrk_chosen(load)
    names = list(variants or DEFAULT_VARIANTS)
    skipped = []
    if not otel_available():
        skipped = [n for n in names if n.startswith('otel')]
        names = [n for n in names if not n.startswith('otel')]
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with Sink() as sink:
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                print(f'  e2e round {round_number + 1}/{rounds}: {name} ...', file=sys.stderr,
                      flush=True)
                raw[name].append(run_one(name, sink, duration, warmup, wrk, settings))
    rows = {}
    lost = []
    for name, results in raw.items():
        row = {key: median([r[key] for r in results])
               for key in ('rps', 'avg_ms', 'p50_ms', 'p99_ms', 'worker_cpu_us')}
        row['hwm_mb'] = median([r['worker_hwm_kb'] for r in results]) / 1024
        row['rps_rounds'] = [round(r['rps']) for r in results]
        row['errors'] = sum(r['errors'] for r in results)
        answered = sum(r['answered'] for r in results)
        if results[0]['received'] is None:
            row['spans'] = None
        else:
            received = sum(r['received'] for r in results)
            expected = sum(r['expected'] for r in results)
            row['spans'] = f'{received}/{expected}'
            if received != expected:
                lost.append(f'{name}: the sink received {received} spans for {answered} '
                            f'answered requests ({expected} expected)')
        rows[name] = row
    bare = rows.get('bare')
    if bare is not None:
        for name, row in rows.items():
            row['rps_ratio'] = row['rps'] / bare['rps']
            # Each round ran every variant once, back to back: the ratio within a round
            # compares like with like on a shared machine; their range is the spread.
            row['ratio_rounds'] = [r['rps'] / b['rps'] for r, b in zip(raw[name], raw['bare'])]
            row['over_cpu_us'] = row['worker_cpu_us'] - bare['worker_cpu_us']
            row['over_hwm_mb'] = row['hwm_mb'] - bare['hwm_mb']
    return {'rows': rows, 'lost': lost, 'skipped': skipped, 'rounds': rounds,
            'duration': duration, 'load': load_name(wrk), 'settings': dict(settings or {})}


def format_summary(summary: dict[str, Any], judge_budgets: bool = True) -> str:
    headers = ['variant', 'req/s', 'ratio', 'ratio per round', 'budget', 'avg ms', 'p99 ms',
               'worker CPU us/req', 'CPU over bare', 'peak RSS MB', 'RSS over bare', 'errors',
               'spans recv/expected']
    body = []
    for name, row in summary['rows'].items():
        ratio = row.get('rps_ratio', float('nan'))
        rounds = row.get('ratio_rounds')
        spread = ('-' if not rounds or name == 'bare'
                  else f'{min(rounds):.2f}-{max(rounds):.2f}' if len(rounds) > 1
                  else f'{rounds[0]:.2f}')
        budget = '-'
        if name in SAMPLED:
            budget = f'>= {BUDGET_SAMPLED_RATIO:.2f}'
            if judge_budgets and ratio == ratio:
                budget += f' {verdict(ratio >= BUDGET_SAMPLED_RATIO)}'
        body.append([name, row['rps'], f'{ratio:.2f}', spread, budget,
                     f'{row["avg_ms"]:.2f}', f'{row["p99_ms"]:.2f}', row['worker_cpu_us'],
                     _signed(row.get('over_cpu_us')), f'{row["hwm_mb"]:.1f}',
                     _signed(row.get('over_hwm_mb')), row['errors'], row['spans']])
    out = [f'End-to-end: gunicorn -w 2 -k sync on 127.0.0.1, GET /hello, load: '
           f'{summary["load"]}; median of {summary["rounds"]} interleaved rounds of '
           f'{summary["duration"]:g} s' + ''.join(
               f'; {name}={value}' for name, value in summary.get('settings', {}).items()),
           '', table(headers, body), '']
    described = {**VARIANTS, **EXTRA_VARIANTS}
    for name, row in summary['rows'].items():
        out.append(f'  {name:<12} {described[name]}; req/s per round {row["rps_rounds"]}')
    for name in summary['skipped']:
        out.append(f'  {name:<12} skipped: OpenTelemetry packages not installed')
    out.append("  ratio: median req/s over bare's; per round: each round's req/s over the "
               "same round's bare (the spread); budget: issue 15's, for sampled and exported")
    rows = summary['rows']
    if judge_budgets and 'traced' in rows and 'bare' in rows:
        ratio = rows['traced']['rps_ratio']
        rss = rows['traced']['over_hwm_mb']
        out.append('')
        out.append(f'  budget (issue 15): sampled throughput >= {BUDGET_SAMPLED_RATIO:.2f} of '
                   f'bare: ' + ', '.join(
                       f'{name} {rows[name]["rps_ratio"]:.2f} '
                       f'{verdict(rows[name]["rps_ratio"] >= BUDGET_SAMPLED_RATIO)}'
                       for name in SAMPLED if name in rows))
        out.append(f'  budget (issue 5): traced throughput >= {BUDGET_THROUGHPUT} of bare '
                   f'({ratio:.2f}): {verdict(ratio >= BUDGET_THROUGHPUT)}')
        out.append(f'  budget (issue 5): traced worker peak RSS <= {BUDGET_RSS_MB:g} MB above '
                   f'bare ({rss:+.1f} MB): {verdict(rss <= BUDGET_RSS_MB)}')
    for line in summary['lost']:
        out.append('  SPANS LOST: ' + line)
    return '\n'.join(out)


def _signed(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:+.1f}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--duration', type=float, default=10.0)
    parser.add_argument('--warmup', type=float, default=2.0)
    parser.add_argument('--load', choices=('auto', 'wrk', 'python'), default='auto')
    parser.add_argument('--variants', help='comma list (default: all)')
    parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                        help='an environment variable for every variant\'s workers, on top '
                             'of the variant\'s own (repeatable), e.g. '
                             'FALCON_TRACING_FLUSH_INTERVAL=0.2')
    parser.add_argument('--quick', action='store_true', help='1 round of 2 s')
    parser.add_argument('--json', help='write the summary as JSON to this file')
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    settings = {}
    for item in args.set:
        name, sep, value = item.partition('=')
        if not sep or not name:
            parser.error(f'--set {item!r}: expected NAME=VALUE')
        settings[name] = value
    summary = run(args.rounds, args.duration, args.warmup, args.load,
                  args.variants.split(',') if args.variants else None, settings)
    print(format_summary(summary, not args.quick))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(summary, out, indent=1)
    return 1 if summary['lost'] else 0


if __name__ == '__main__':
    sys.exit(main())
