"""Run the reliability scenarios and print the README's "Reliability" table (RST).

Usage::

    python -m tests.reliability.report                 # every scenario + sustained load
    python -m tests.reliability.report down hang       # some scenarios only
    python -m tests.reliability.report --seconds 0     # no sustained-load run

The numbers come from the same code the tests assert on
(:mod:`tests.reliability.scenarios`); the machine they were measured on is printed
under the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from typing import Optional, Sequence

from . import scenarios
from ._remote import RemoteCollector


def _ms(seconds: float) -> str:
    return f'{seconds * 1000:.2f}'


def _kib(size: float) -> str:
    return f'{size / 1024:,.0f}'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An RST simple table."""
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    rule = '  '.join('=' * width for width in widths)

    def line(cells: Sequence[str]) -> str:
        return '  '.join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return '\n'.join([rule, line(header), rule, *(line(row) for row in rows), rule])


def _row(result: scenarios.Result) -> list[str]:
    stats = result.stats
    accounted = stats['sent'] + stats['dropped'] + stats['failed']
    exact = 'yes' if accounted == result.finished and stats['queued'] == 0 else 'NO'
    if result.recovered is None:
        recovery = 'n/a'
    elif result.recovered and result.recovery is not None:
        recovery = f'{result.recovery:.2f}'
    else:
        recovery = 'NOT RECOVERED'
    return [result.title, f'{result.requests:,}', str(result.failed_requests),
            f'{stats["sent"]:,} / {stats["dropped"]:,} / {stats["failed"]:,}',
            f'{result.received:,}', exact, f'{_ms(result.p50)} / {_ms(result.p99)}',
            f'{_kib(result.memory_peak)} ({_kib(result.memory_bound)})', recovery,
            f'{result.shutdown:.2f} ({result.shutdown_deadline:.1f})']


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as info:
            for text in info:
                if text.startswith('model name'):
                    cpu = text.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, '
            f'{platform.python_implementation()} {platform.python_version()}')


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tests.reliability.report',
                                     description=__doc__.split('\n', 1)[0])
    parser.add_argument('names', nargs='*', metavar='SCENARIO',
                        help=f'scenarios to run (default: all of '
                             f'{", ".join(s.name for s in scenarios.SCENARIOS)})')
    parser.add_argument('--seconds', type=float, default=9.0,
                        help='length of the sustained-load run (0: skip it); default 9')
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in scenarios.BY_NAME]
    if unknown:
        parser.error(f'unknown scenario(s): {", ".join(unknown)}')
    # The reporter's warnings about the collector are the point of the exercise here.
    logging.getLogger('falcon_tracing_wsgi').setLevel(logging.ERROR)

    names = args.names or [scenario.name for scenario in scenarios.SCENARIOS]
    started = time.perf_counter()
    per_span = scenarios.span_bytes()
    rows = []
    with RemoteCollector() as collector, scenarios.certificate() as cert:
        for name in names:
            if scenarios.BY_NAME[name].tls and cert is None:
                sys.stderr.write('tls: skipped, the openssl command is not available\n')
                continue
            rows.append(_row(scenarios.run_scenario(name, collector, cert, per_span)))
        sustained = scenarios.run_sustained(collector, args.seconds) if args.seconds > 0 \
            else None
    elapsed = time.perf_counter() - started

    print(_table(['Scenario', 'Requests', 'Failed', 'Spans sent / dropped / failed',
                  'Received', 'Exact', 'Latency p50 / p99 ms', 'Memory KiB (bound)',
                  'Recovery s', 'Shutdown s (deadline)'], rows))
    print()
    if sustained is not None:
        stats = sustained.stats
        first, middle, last = sustained.thirds
        print(f'Sustained load, {sustained.seconds:.1f} s: {sustained.answered:,} requests '
              f'answered, {sustained.failed_requests} failed; {stats["sent"]:,} spans sent, '
              f'{stats["dropped"]} dropped, {stats["failed"]} failed, '
              f'{sustained.received:,} received; memory by thirds {_kib(first)} / '
              f'{_kib(middle)} / {_kib(last)} KiB; shutdown {sustained.shutdown:.3f} s.')
        print()
    print(f'Machine: {_machine()}. {scenarios.LOAD_THREADS} request threads, '
          f'{scenarios.LOAD_REQUESTS:,} requests per phase, queue {scenarios.QUEUE_SIZE}, '
          f'batch {scenarios.BATCH_SIZE}, one finished span ~{per_span:,.0f} bytes. '
          f'Total {elapsed:.0f} s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
