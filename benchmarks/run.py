"""Run every benchmark and print their tables: ``python benchmarks/run.py [--quick]``.

The benchmarks (each also runs on its own, see ``benchmarks/README.md``):

* ``inprocess``: per-request cost in-process, bare Falcon vs this package (sampled and
  exported, unsampled, excluded, no-op tracer) vs OpenTelemetry;
* ``e2e``: gunicorn ``-w 2`` under wrk (or a Python load generator): throughput, p99,
  worker CPU and peak RSS, spans received == requests answered;
* ``reporter``: spans per second one process encodes and sends;
* ``delivery``: spans made / delivered / dropped under load (CPU-bound request threads,
  child spans, a tight loop; and a real gunicorn gthread worker, 30 child spans per
  request, under wrk or the Python load generator) at default settings;
* ``propagation``: extract and inject cost per format;
* ``instructions``: instructions per request counted by valgrind's callgrind (bare,
  sampled + Zipkin, sampled + OTLP, unsampled, excluded,
  OpenTelemetry), the budgets beside them; skipped when valgrind is not installed.

``--quick`` runs each one briefly (well under two minutes in all) to prove it works:
nothing is judged on timings then. The exit status is non-zero only when a benchmark
crashed or spans were lost (an exporting variant delivered fewer or more spans than
requests were made, or a gunicorn delivery scenario delivered under 99.5 %); a full
run prints the budgets (``holds``/``MISSED``) but does not fail on them either.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from _common import machine

BENCHMARKS = ('propagation', 'reporter', 'delivery', 'instructions', 'inprocess', 'e2e')


def _runners(quick: bool, load: str) -> dict[str, Callable[[], tuple[dict[str, Any], str]]]:
    import bench_delivery
    import bench_e2e
    import bench_inprocess
    import bench_instructions
    import bench_propagation
    import bench_reporter

    def inprocess() -> tuple[dict[str, Any], str]:
        result = bench_inprocess.run(1, 1_000, 200) if quick else bench_inprocess.run()
        return result, bench_inprocess.format_summary(result, not quick)

    def e2e() -> tuple[dict[str, Any], str]:
        result = bench_e2e.run(1, 2.0, 1.0, load) if quick else bench_e2e.run(load=load)
        return result, bench_e2e.format_summary(result, not quick)

    def reporter() -> tuple[dict[str, Any], str]:
        result = bench_reporter.run(5_000, 2_000) if quick else bench_reporter.run()
        text = bench_reporter.format_summary(result, not quick)
        if bench_instructions.valgrind() is not None:
            # the repeatable figure next to the wall-time one (see bench_reporter)
            result['instructions'] = bench_reporter.count_instructions(
                bench_reporter.QUICK_INSTRUCTION_SIZES if quick
                else bench_reporter.INSTRUCTION_SIZES)
            result['lost'] += result['instructions'].get('lost', [])
            text += '\n' + bench_reporter.format_instructions(result['instructions'])
        return result, text

    def delivery() -> tuple[dict[str, Any], str]:
        result = bench_delivery.run(0.5 if quick else 3.0, load=load)
        wrapped = {'scenarios': result, 'lost': bench_delivery.problems(result)}
        return wrapped, bench_delivery.format_summary(result, not quick)

    def propagation() -> tuple[dict[str, Any], str]:
        result = bench_propagation.run(2_000 if quick else 100_000)
        return result, bench_propagation.format_summary(result)

    def instructions() -> tuple[dict[str, Any], str]:
        if bench_instructions.valgrind() is None:
            return {'skipped': 'valgrind not installed'}, \
                'skipped: valgrind is not installed (apt-get install valgrind)'
        if quick:
            result = bench_instructions.run(list(bench_instructions.QUICK_VARIANTS),
                                            bench_instructions.QUICK_SIZES, jobs=2,
                                            calls=False)
        else:
            result = bench_instructions.run()
        return result, bench_instructions.format_summary(result)

    return {'inprocess': inprocess, 'e2e': e2e, 'reporter': reporter,
            'delivery': delivery, 'propagation': propagation, 'instructions': instructions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--quick', action='store_true',
                        help='smoke mode: every benchmark briefly, no timing judged')
    parser.add_argument('--only', help=f'comma list from {",".join(BENCHMARKS)}')
    parser.add_argument('--load', choices=('auto', 'wrk', 'python'), default='auto',
                        help='load generator of e2e and the gunicorn delivery scenarios '
                             '(auto: wrk when installed)')
    parser.add_argument('--json', help='write every result as JSON to this file')
    args = parser.parse_args()
    names = args.only.split(',') if args.only else list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f'unknown benchmark {", ".join(unknown)}; choose from '
                     f'{", ".join(BENCHMARKS)}')
    print(f'machine: {machine()}')
    print(f'mode: {"quick smoke run (timings not judged)" if args.quick else "full"}\n',
          flush=True)
    runners = _runners(args.quick, args.load)
    results: dict[str, Any] = {'machine': machine(), 'quick': args.quick}
    failed = []
    for name in names:
        started = time.monotonic()
        print(f'== {name} ==', flush=True)
        try:
            result, text = runners[name]()
        except Exception:
            traceback.print_exc()
            failed.append(f'{name}: crashed')
            continue
        results[name] = result
        print(text)
        print(f'({name}: {time.monotonic() - started:.0f} s)\n', flush=True)
        for line in result.get('lost', []):
            failed.append(f'{name}: spans lost: {line}')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if failed:
        print('FAILED: ' + '; '.join(failed))
        return 1
    print('all benchmarks ran; no spans lost')
    return 0


if __name__ == '__main__':
    sys.exit(main())
