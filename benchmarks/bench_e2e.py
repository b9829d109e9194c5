"""End-to-end: gunicorn (``-w 2``, sync workers) on 127.0.0.1 under a load generator.

Method (the baseline's): ``gunicorn -w 2 -k sync`` (no preload, access log off) serves
``benchmarks/apps.py`` (variant from ``BENCH_VARIANT``) on a free loopback port; the
load generator is ``wrk -t2 -c32 --latency`` against ``GET /hello`` when ``wrk`` is
installed, else ``loadgen.py`` (2 processes, 32 connections); the table says which. A
warm-up run (not reported) comes first. Rounds interleave the variants.

Reported per variant (median over rounds): requests per second and its ratio to bare,
p99 latency, **worker CPU per request** (``utime + stime`` of the worker processes from
``/proc/<pid>/stat`` across the measured run, divided by the requests wrk completed),
**worker peak RSS** (``VmHWM``, the larger of the two workers; the package's bytecode is
compiled first, as ``pip install`` does, see ``_compile_package``), and the span check:
after gunicorn stops (workers flush their exporters at exit), the spans the sink
received must equal the requests the workers answered (counted by ``gunicorn_conf.py``,
warm-up included).

Note: the load generator and the server share the machine's cores, and sync workers close
the connection after every response, so connect/accept costs are in every request.

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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from apps import VARIANT_ENV, VARIANTS
from _common import HERE, PYTHON, ROOT, Sink, median, otel_available, table, verdict

#: The variants run by default (any name from apps.VARIANTS can be asked for).
DEFAULT_VARIANTS = ('bare', 'traced', 'otel_zipkin')
EXPORTING = ('traced', 'otel_zipkin')
BUDGET_THROUGHPUT = 0.95
BUDGET_RSS_MB = 2.0
_TICK = os.sysconf('SC_CLK_TCK')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


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


def _load(port: int, duration: float, use_wrk: bool) -> dict[str, Any]:
    url = f'http://127.0.0.1:{port}/hello'
    if use_wrk:
        proc = subprocess.run(['wrk', '-t2', '-c32', f'-d{max(1, round(duration))}s', '--latency', url],
                              capture_output=True, text=True, timeout=duration + 60)
        if proc.returncode != 0:
            raise RuntimeError(f'wrk failed: {proc.stderr}')
        return _parse_wrk(proc.stdout)
    proc = subprocess.run([PYTHON, str(HERE / 'loadgen.py'), '--port', str(port),
                           '--path', '/hello', '--connections', '32', '--procs', '2',
                           '--duration', f'{duration:g}'],
                          capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f'loadgen failed: {proc.stderr}')
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


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


def run_one(variant: str, sink: Sink, duration: float, warmup: float,
            use_wrk: bool) -> dict[str, Any]:
    """Start gunicorn for ``variant``, load it, stop it, check the spans."""
    port = _free_port()
    counts_dir = tempfile.mkdtemp(prefix='bench-e2e-')
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(('FALCON_TRACING_', 'OTEL_')):
            del env[key]
    env.update({'BENCH_GUNICORN': '1', 'BENCH_VARIANT': variant, 'BENCH_SINK_URL': sink.url,
                'BENCH_COUNT_DIR': counts_dir, 'FALCON_TRACING_SERVICE_NAME': 'bench',
                'FALCON_TRACING_ZIPKIN_URL': sink.url, 'OTEL_SERVICE_NAME': 'bench',
                'PYTHONPATH': os.pathsep.join([str(HERE), str(ROOT)])})
    env.update(VARIANT_ENV.get(variant, {}))
    log = open(os.path.join(counts_dir, 'gunicorn.log'), 'w')
    master = subprocess.Popen(
        [PYTHON, '-m', 'gunicorn', '-w', '2', '-k', 'sync', '-b', f'127.0.0.1:{port}',
         '-c', str(HERE / 'gunicorn_conf.py'), '--chdir', str(HERE), 'apps:app'],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    before = sink.counts()['spans']
    try:
        workers = _wait_ready(master, port)
        _load(port, warmup, use_wrk)
        cpu0 = sum(_cpu_seconds(pid) for pid in workers)
        result = _load(port, duration, use_wrk)
        cpu = sum(_cpu_seconds(pid) for pid in workers) - cpu0
        result['worker_cpu_us'] = cpu / max(result['requests'], 1) * 1e6
        result['worker_hwm_kb'] = max(_hwm_kb(pid) for pid in workers)
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(60)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(10)
        log.close()
    try:
        answered = sum(int(Path(counts_dir, name).read_text())
                       for name in os.listdir(counts_dir) if name.isdigit())
        result['answered'] = answered
        if variant in EXPORTING:
            result['received'] = sink.wait_for(before + answered, 15.0)['spans'] - before
        else:
            result['received'] = None
    finally:
        shutil.rmtree(counts_dir, ignore_errors=True)
    return result


def _wait_ready(master: subprocess.Popen[bytes], port: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f'gunicorn exited with {master.returncode}')
        try:
            with urllib.request.urlopen(f'http://127.0.0.1:{port}/hello', timeout=2) as resp:
                resp.read()
            workers = _children(master.pid)
            if len(workers) == 2:
                return workers
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
        load: str = 'auto', variants: Optional[list[str]] = None) -> dict[str, Any]:
    _compile_package()
    use_wrk = shutil.which('wrk') is not None if load == 'auto' else load == 'wrk'
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
                raw[name].append(run_one(name, sink, duration, warmup, use_wrk))
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
            row['spans'] = f'{received}/{answered}'
            if received != answered:
                lost.append(f'{name}: the sink received {received} spans for {answered} '
                            f'answered requests')
        rows[name] = row
    bare = rows.get('bare')
    if bare is not None:
        for row in rows.values():
            row['rps_ratio'] = row['rps'] / bare['rps']
            row['over_cpu_us'] = row['worker_cpu_us'] - bare['worker_cpu_us']
            row['over_hwm_mb'] = row['hwm_mb'] - bare['hwm_mb']
    return {'rows': rows, 'lost': lost, 'skipped': skipped, 'rounds': rounds,
            'duration': duration, 'load': 'wrk -t2 -c32 --latency' if use_wrk
            else 'loadgen.py (2 processes, 32 connections; wrk not installed)'}


def format_summary(summary: dict[str, Any], judge_budgets: bool = True) -> str:
    headers = ['variant', 'req/s', 'ratio', 'avg ms', 'p99 ms', 'worker CPU us/req',
               'CPU over bare', 'peak RSS MB', 'RSS over bare', 'errors',
               'spans recv/answered']
    body = []
    for name, row in summary['rows'].items():
        body.append([name, row['rps'], f'{row.get("rps_ratio", float("nan")):.2f}',
                     f'{row["avg_ms"]:.2f}', f'{row["p99_ms"]:.2f}', row['worker_cpu_us'],
                     _signed(row.get('over_cpu_us')), f'{row["hwm_mb"]:.1f}',
                     _signed(row.get('over_hwm_mb')), row['errors'], row['spans']])
    out = [f'End-to-end: gunicorn -w 2 -k sync on 127.0.0.1, GET /hello, load: '
           f'{summary["load"]}; median of {summary["rounds"]} interleaved rounds of '
           f'{summary["duration"]:g} s', '', table(headers, body), '']
    for name, row in summary['rows'].items():
        out.append(f'  {name:<12} {VARIANTS[name]}; req/s per round {row["rps_rounds"]}')
    for name in summary['skipped']:
        out.append(f'  {name:<12} skipped: OpenTelemetry packages not installed')
    rows = summary['rows']
    if judge_budgets and 'traced' in rows and 'bare' in rows:
        ratio = rows['traced']['rps_ratio']
        rss = rows['traced']['over_hwm_mb']
        out.append('')
        out.append(f'  budget: traced throughput >= {BUDGET_THROUGHPUT} of bare ({ratio:.2f}): '
                   f'{verdict(ratio >= BUDGET_THROUGHPUT)}')
        out.append(f'  budget: traced worker peak RSS <= {BUDGET_RSS_MB:g} MB above bare '
                   f'({rss:+.1f} MB): {verdict(rss <= BUDGET_RSS_MB)}')
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
    parser.add_argument('--quick', action='store_true', help='1 round of 2 s')
    parser.add_argument('--json', help='write the summary as JSON to this file')
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    summary = run(args.rounds, args.duration, args.warmup, args.load,
                  args.variants.split(',') if args.variants else None)
    print(format_summary(summary, not args.quick))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(summary, out, indent=1)
    return 1 if summary['lost'] else 0


if __name__ == '__main__':
    sys.exit(main())
