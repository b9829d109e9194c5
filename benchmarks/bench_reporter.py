"""Reporter capacity: spans per second one process encodes and sends to a loopback sink.

The spans are real server spans: the wrapped benchmark app (``apps.py``) is run for a
few hundred requests on both routes with a reporter that keeps the finished spans, so
each has the tags the middleware and the Falcon component really set (10 tags, a peer
address, a route name). Those span objects are then reported over and over (the
encoder does not change a span), to the counting sink (``sink.py``, its own process)
over HTTP/1.1 keep-alive.

Figures:

* ``encode``: :meth:`JsonV2Encoder.encode` alone (best of 5), no I/O; and, on the same
  spans, the OTLP encoders (protobuf and JSON) next to it: the three are timed in turn
  over every sample span (best of 7 rounds each), so their ratio is fair.
* ``worker``: the production shape, **default settings**. This thread calls
  ``report()`` as request threads do while the reporter's worker thread encodes, frames
  and POSTs batches (when the worker falls behind, ``report()`` encodes too, as it does
  on a busy request thread); timed from the first ``report()`` until every span was
  sent (a ``flush()`` sends the last partial batch, as ``close()`` would). ``CPU/span``
  is process CPU (both threads) over the same interval, ``page faults`` the process's
  minor page faults over it (``getrusage``), for information. Once more with the old fixed
  batches of 256 spans for comparison (that variant may drop spans: it is the old
  behaviour, shown, not judged). The CPU per span minus encoding alone is what the
  pipeline itself costs (report, queue, batches, framing, POST). (A variant with the
  JSON made beforehand would show it directly, but a producer that fast outruns the
  sink: the 16 MiB of encoded spans the queue may hold fill up and spans are dropped,
  as they should be; a real producer is slowed by the encoding it helps with.)
  The defaults run twice, each with a new reporter. The first run of a process was
  5-15 % slower than later ones while every 4 MiB body was a fresh mapping (about one
  page fault per 4 KiB of the bodies sent, falling to almost none once glibc kept such
  blocks, a few runs later); bodies now go into reused storage
  (``_framing.BodyBuffer``) and a first run takes a few thousand (README, issue 12). The first
  run is the one judged against the budget (the worse case, and what the benchmark
  always judged); the second is printed next to it for information.
* ``encode pieces``: where the encode time goes, on the same span: the fixed part (ids,
  name, times, endpoints: the span with its tags removed), the tags without the ones
  lifted into Zipkin fields (``span.kind``, ``peer.*``), and the whole span. The
  differences are the per-tag loop and the ``kind``/``remoteEndpoint`` lift.

* ``instructions`` (``--instructions``, needs valgrind): the worker figure's work counted
  by valgrind's callgrind, which repeats on a shared machine where wall time does not
  (spans per second have swung by 1.5x between runs of the same code here, with the
  same instructions). Each count runs the worker shape at default settings in a fresh
  process under callgrind, for two numbers of spans; the difference over the
  difference of spans cancels start-up, the sample spans and the sink. Both threads
  are counted (the sink is another process). Once with the real encoder (report +
  encode + POST) and once with the spans' JSON made beforehand and an encoder that
  hands it back (the pipeline alone); the difference is encoding. Every span must
  reach the sink in each run. This is what to compare before and after a change to
  the pipeline; the spans-per-second budget stays judged on the wall-time run.

* ``--repeat N`` (for information, never judged): after those runs, the defaults N more
  times in the same process, each with its user and system CPU per span. Some
  processes have run the same spans with 35-40 % more user CPU in their first seconds
  than later (4.54, 3.99, 3.21 µs per span in the first three runs of one), others not
  at all: this shows whether a judged first run paid such a warm-up.

Run: ``python benchmarks/bench_reporter.py [--spans 200000] [--quick] [--instructions]
[--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import timeit
from typing import Any

from _common import ROOT, Sink, table, verdict

sys.path.insert(0, str(ROOT))

BUDGET_SPANS_PER_SECOND = 300_000
#: The worker figure's settings: the defaults (batches by bytes, up to 4 MiB), and the
#: old fixed batches of 256 spans for comparison. The defaults run twice (see the
#: module docstring); the first is judged, both are shown.
VARIANTS = {'defaults': {}, 'defaults, second in process': {},
            'batch_size=256': {'batch_size': 256}}


def real_spans(count: int = 400) -> list[Any]:
    """Finished server spans from the wrapped benchmark app (``count`` requests)."""
    import apps
    from bench_inprocess import _run_route

    from falcon_tracing_wsgi import TracingMiddleware
    from falcon_tracing_wsgi.propagation import build_propagator
    from falcon_tracing_wsgi.tracer.sampler import ConstSampler
    from falcon_tracing_wsgi.tracer.tracer import Tracer

    class Keep:
        def __init__(self) -> None:
            self.spans: list[Any] = []

        def report(self, span: Any) -> None:
            self.spans.append(span)

        def flush(self, timeout: float) -> bool:
            return True

        def close(self, timeout: float = 0) -> bool:
            return True

    keep = Keep()
    tracer = Tracer(keep, ConstSampler(True), build_propagator(('b3', 'w3c', 'baggage')))
    app = TracingMiddleware(apps.make_app(), tracer=tracer)
    for path in ('/hello', '/users/42'):
        _run_route(app, path, count // 2, None)
    return keep.spans


def run(spans: int = 200_000, encode_runs: int = 100_000, repeat: int = 0
        ) -> dict[str, Any]:
    from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
    sample = real_spans()
    encoder = JsonV2Encoder(Endpoint('bench', '10.0.0.7'))
    size = sum(len(encoder.encode(span) or '') for span in sample) / len(sample)
    span = sample[-1]
    best = min(timeit.repeat(lambda: encoder.encode(span), number=encode_runs, repeat=5))
    result: dict[str, Any] = {'span_bytes': size, 'tags': len(span.tags),
                              'encode_per_s': encode_runs / best,
                              'encode_us': best / encode_runs * 1e6,
                              'formats': _encode_formats(sample, encoder),
                              'pieces': _encode_pieces(span, encoder,
                                                       max(encode_runs // 2, 1_000))}
    batch = [sample[i % len(sample)] for i in range(spans)]
    lost = []
    with Sink() as sink:
        result['worker'] = {}
        for name, options in VARIANTS.items():
            figures = _worker(sink, encoder, batch, options)
            result['worker'][name] = figures
            if figures['received'] != figures['stats']['sent'] or (
                    not options and figures['received'] != spans):
                lost.append(f'worker, {name}: the sink received '
                            f'{figures["received"]} of {spans} spans ({figures["stats"]})')
        # For information (never judged): the same defaults run again and again in this
        # process, with the user and system CPU of each run, to see a process warm up.
        result['repeats'] = []
        for _ in range(repeat):
            before = resource.getrusage(resource.RUSAGE_SELF)
            figures = _worker(sink, encoder, batch, {})
            after = resource.getrusage(resource.RUSAGE_SELF)
            figures['user_us'] = (after.ru_utime - before.ru_utime) / spans * 1e6
            figures['sys_us'] = (after.ru_stime - before.ru_stime) / spans * 1e6
            result['repeats'].append(figures)
            if figures['received'] != spans:
                lost.append(f'worker, repeated run: the sink received '
                            f'{figures["received"]} of {spans} spans ({figures["stats"]})')

    result['spans'] = spans
    result['lost'] = lost
    return result


def _encode_pieces(span: Any, encoder: Any, runs: int) -> dict[str, float]:
    """us per encode of ``span`` with no tags, with its plain tags only, and whole."""
    import copy
    bare = copy.copy(span)
    bare.tags = {}
    plain = copy.copy(span)
    plain.tags = {key: value for key, value in span.tags.items()
                  if key != 'span.kind' and not key.startswith('peer.')}
    pieces = {'no tags': bare, 'plain tags': plain, 'whole span': span}
    best = {name: float('inf') for name in pieces}
    for _ in range(5):  # interleaved rounds, as in _encode_formats
        for name, item in pieces.items():
            encoder.encode(item)  # warm the encoder's caches for this shape
            best[name] = min(best[name],
                             timeit.timeit(lambda: encoder.encode(item), number=runs) / runs)
    return {name: value * 1e6 for name, value in best.items()}


def _encode_formats(sample: list[Any], zipkin: Any) -> dict[str, dict[str, float]]:
    """us per span and bytes per span of each wire format, on the same real spans."""
    from falcon_tracing_wsgi.export.otlp import JsonEncoder, ProtobufEncoder
    resource = {'service.name': 'bench', 'telemetry.sdk.name': 'falcon_tracing_wsgi',
                'telemetry.sdk.language': 'python', 'telemetry.sdk.version': '0',
                'host.name': 'bench-host'}
    encoders = {'zipkin json': zipkin, 'otlp protobuf': ProtobufEncoder(resource, '0'),
                'otlp json': JsonEncoder(resource, '0')}
    best = {name: float('inf') for name in encoders}
    for _ in range(7):  # interleaved rounds: machine drift hits every format alike
        for name, encoder in encoders.items():
            encode = encoder.encode
            start = time.perf_counter()
            for _ in range(25):
                for span in sample:
                    encode(span)
            best[name] = min(best[name], (time.perf_counter() - start) / (25 * len(sample)))
    return {name: {'us': best[name] * 1e6,
                   'bytes': sum(len(encoder.encode(span) or '') for span in sample)
                   / len(sample)} for name, encoder in encoders.items()}


def _worker(sink: Sink, encoder: Any, batch: list[Any],
            options: dict[str, Any]) -> dict[str, Any]:
    """The production shape: this thread reports while the worker thread sends."""
    from falcon_tracing_wsgi.export.http import HttpSender
    from falcon_tracing_wsgi.export.pipeline import BatchReporter
    spans = len(batch)
    before = sink.counts()['spans']
    reporter = BatchReporter(HttpSender(sink.url), encoder, **options)
    report = reporter.report
    stats = reporter.stats
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu0 = time.process_time()
    start = time.perf_counter()
    for item in batch:
        report(item)
    reported = time.perf_counter() - start
    # The last partial batch would wait for the interval (1 s): send it now, as close()
    # would. Full batches were sent by the worker meanwhile.
    reporter.flush(120.0)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    final = stats()
    reporter.close(5.0)
    received = sink.wait_for(before + spans, 10.0)['spans'] - before
    return {'per_s': final['sent'] / elapsed, 'cpu_us': cpu / spans * 1e6,
            'report_us': reported / spans * 1e6, 'received': received, 'stats': final,
            'faults': faults}


#: (short, long) spans per callgrind run of the instruction count; quick: smoke sizes.
INSTRUCTION_SIZES = (20_000, 60_000)
QUICK_INSTRUCTION_SIZES = (2_000, 6_000)
#: The two shapes counted: the whole worker path, and the pipeline alone.
_COUNTED = {'report + encode + POST': False, 'the pipeline alone (JSON made before)': True}


def count_child(spans: int, pre_encoded: bool) -> dict[str, Any]:
    """``--count-child``: one worker run at default settings (run under callgrind)."""
    from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
    sample = real_spans()
    encoder: Any = JsonV2Encoder(Endpoint('bench', '10.0.0.7'))
    if pre_encoded:
        sample = [encoder.encode(span) for span in sample]

        class HandBack(JsonV2Encoder):
            encode = staticmethod(str)  # the piece is the span's JSON: C-level identity
        encoder = HandBack(Endpoint('bench', '10.0.0.7'))
    batch = (sample * (spans // len(sample) + 1))[:spans]
    with Sink() as sink:
        figures = _worker(sink, encoder, batch, {})
    return {'sent': figures['stats']['sent'], 'received': figures['received']}


def count_instructions(sizes: tuple[int, int] = INSTRUCTION_SIZES) -> dict[str, Any]:
    """Instructions per span of each shape in ``_COUNTED`` (see the module docstring)."""
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from _common import HERE, PYTHON
    from bench_instructions import _base_env, _callgrind_total, valgrind

    executable = valgrind()
    if executable is None:
        return {'error': 'valgrind is not installed'}

    def one(task: tuple[bool, int]) -> tuple[int, dict[str, Any]]:
        pre_encoded, spans = task
        with tempfile.TemporaryDirectory() as directory:
            out = Path(directory) / 'callgrind.out'
            command = [executable, '--tool=callgrind', '-q', '--trace-children=no',
                       f'--callgrind-out-file={out}', PYTHON, str(HERE / 'bench_reporter.py'),
                       '--count-child', str(spans)] + (['--pre-encoded'] if pre_encoded else [])
            done = subprocess.run(command, env=_base_env(), capture_output=True, text=True,
                                  timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f'{" ".join(command[-3:])} failed:\n{done.stderr[-3000:]}')
            return _callgrind_total(out), json.loads(done.stdout.strip().splitlines()[-1])

    tasks = [(pre, spans) for pre in _COUNTED.values() for spans in sizes]
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(tasks, pool.map(one, tasks)))
    result: dict[str, Any] = {'sizes': list(sizes), 'per_span': {}, 'lost': []}
    for name, pre in _COUNTED.items():
        (short, short_run), (long, long_run) = runs[(pre, sizes[0])], runs[(pre, sizes[1])]
        result['per_span'][name] = (long - short) / (sizes[1] - sizes[0])
        for spans, figures in ((sizes[0], short_run), (sizes[1], long_run)):
            if figures['sent'] != spans or figures['received'] != spans:
                result['lost'].append(f'instructions, {name}, {spans} spans: {figures}')
    return result


def format_instructions(counted: dict[str, Any]) -> str:
    if 'error' in counted:
        return f'  instructions per span: not counted ({counted["error"]})'
    per_span = counted['per_span']
    whole, alone = (per_span[name] for name in _COUNTED)
    short, long = counted['sizes']
    return '\n'.join([
        f'  instructions per span (callgrind, default settings, (Ir({long:,}) - Ir({short:,}))'
        f' / {long - short:,} spans, both threads):',
        *(f'    {name}: {value:,.0f}' for name, value in per_span.items()),
        f'    encoding (the difference): {whole - alone:,.0f}',
        *(f'  SPANS LOST: {line}' for line in counted['lost'])])


def format_repeats(repeats: list[dict[str, Any]]) -> str:
    """The ``--repeat`` runs, one row each, in order."""
    rows = [[str(number), f'{figures["per_s"]:,.0f}', f'{figures["user_us"]:.2f}',
             f'{figures["sys_us"]:.2f}', f'{figures["faults"]:,}']
            for number, figures in enumerate(repeats, len(VARIANTS) + 1)]
    return ('\nThe defaults again in the same process (--repeat; for information, never '
            'judged):\n\n' + table(['run in process', 'spans/s', 'user CPU us/span',
                                     'sys CPU us/span', 'page faults'], rows))


def format_summary(result: dict[str, Any], judge_budgets: bool = True) -> str:
    rows = [['encode only', '-', result['encode_per_s'], result['encode_us'], '-', '-']]
    for name, figures in result['worker'].items():
        rows.append([f'worker: report + encode + POST', name, figures['per_s'],
                     1e6 / figures['per_s'], figures['cpu_us'], f'{figures["faults"]:,}'])
    default = result['worker']['defaults']
    out = [f'Reporter capacity: {result["spans"]:,} real server spans ({result["tags"]} tags, '
           f'{result["span_bytes"]:.0f} bytes of JSON each), one process, to the loopback '
           f'sink', '',
           table(['path', 'settings', 'spans/s', 'us/span (wall)', 'CPU us/span',
                  'page faults'], rows), '',
           f'  report() on the request thread: {default["report_us"]:.2f} us/span '
           f'(encoding included when it helps); worker stats (defaults) {default["stats"]}',
           f'  the pipeline without encoding (report, queue, batches, framing, POST): '
           f'{default["cpu_us"] - result["encode_us"]:.2f} us/span of CPU (the defaults\' '
           f'CPU per span minus encoding alone)']
    formats = result.get('formats', {})
    if formats:
        zipkin = formats['zipkin json']['us']
        out.append('  encode by wire format (us/span, bytes/span, vs Zipkin): ' + '; '.join(
            f'{name} {item["us"]:.2f} us, {item["bytes"]:.0f} B ({item["us"] / zipkin - 1:+.0%})'
            for name, item in formats.items()))
    pieces = result.get('pieces', {})
    if pieces:
        out.append('  encode pieces (us/span): ' + '; '.join(
            f'{name} {value:.2f}' for name, value in pieces.items()))
    if judge_budgets:
        out.append(f'  budget: >= {BUDGET_SPANS_PER_SECOND:,} spans/s/process (worker, default '
                   f'settings: {default["per_s"]:,.0f}): '
                   f'{verdict(default["per_s"] >= BUDGET_SPANS_PER_SECOND)}')
    for line in result['lost']:
        out.append('  SPANS LOST: ' + line)
    return '\n'.join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--spans', type=int, default=200_000)
    parser.add_argument('--quick', action='store_true', help='5,000 spans')
    parser.add_argument('--json', help='write the result as JSON to this file')
    parser.add_argument('--instructions', action='store_true',
                        help='also count instructions per span with callgrind (~1 min)')
    parser.add_argument('--repeat', type=int, default=0, metavar='N',
                        help='then run the defaults N more times in the same process and '
                             'print each (for information, never judged)')
    parser.add_argument('--count-child', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--pre-encoded', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_child:
        print(json.dumps(count_child(args.count_child, args.pre_encoded)))
        return 0
    if args.quick:
        args.spans = 5_000
    result = run(args.spans, 2_000 if args.quick else 100_000, args.repeat)
    if args.instructions:
        result['instructions'] = count_instructions(
            QUICK_INSTRUCTION_SIZES if args.quick else INSTRUCTION_SIZES)
        result['lost'] += result['instructions'].get('lost', [])
    print(format_summary(result, not args.quick))
    if result['repeats']:
        print(format_repeats(result['repeats']))
    if args.instructions:
        print(format_instructions(result['instructions']))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(result, out, indent=1)
    return 1 if result['lost'] else 0


if __name__ == '__main__':
    os.environ.pop('FALCON_TRACING_ZIPKIN_URL', None)
    sys.exit(main())
