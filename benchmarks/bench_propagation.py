"""Propagation: the cost of extracting and injecting a context, per format.

Measured through the public tracer API the middleware uses: ``tracer.extract(
Format.HTTP_HEADERS, EnvironHeaders(environ))`` on a WSGI environ that carries the
format's headers (as a server receives them), and ``tracer.inject(context,
Format.HTTP_HEADERS, {})``. Each figure is the best of 5 ``timeit`` repeats (GC off, warm
caches: the floor, lower than what the same code costs inside a busy request).

Rows: each single format, the default composite (``b3,w3c,baggage``) on a request carrying
B3 headers, a ``traceparent``, or no context at all (a new trace), and the composite of
all formats.

Run: ``python benchmarks/bench_propagation.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from typing import Any

from _common import ROOT, table

sys.path.insert(0, str(ROOT))

_TRACE = '80f198ee56343ba864fe8b2a57d3eff7'
_SPAN = 'e457b5a2e4d86bd1'
_PARENT = '05e3ac9a4f6e3b90'
#: environ keys a caller of each format sends.
HEADERS = {
    'b3': {'HTTP_X_B3_TRACEID': _TRACE, 'HTTP_X_B3_SPANID': _SPAN,
           'HTTP_X_B3_PARENTSPANID': _PARENT, 'HTTP_X_B3_SAMPLED': '1'},
    'b3single': {'HTTP_B3': f'{_TRACE}-{_SPAN}-1-{_PARENT}'},
    'w3c': {'HTTP_TRACEPARENT': f'00-{_TRACE}-{_SPAN}-01',
            'HTTP_TRACESTATE': 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'},
    'baggage': {'HTTP_BAGGAGE': 'user.id=42,tenant=acme%20corp'},
    'jaeger': {'HTTP_UBER_TRACE_ID': f'{_TRACE}:{_SPAN}:{_PARENT}:1',
               'HTTP_UBERCTX_TENANT': 'acme'},
    'xray': {'HTTP_X_AMZN_TRACE_ID':
             'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1'},
}
#: (row label, configured formats, headers the request carries)
CASES = [(name, (name,), name) for name in HEADERS] + [
    ('b3,w3c,baggage (B3 in)', ('b3', 'w3c', 'baggage'), 'b3'),
    ('b3,w3c,baggage (W3C in)', ('b3', 'w3c', 'baggage'), 'w3c'),
    ('b3,w3c,baggage (none in)', ('b3', 'w3c', 'baggage'), None),
    ('all formats (B3 in)', tuple(HEADERS), 'b3'),
]


def _environ(extra: dict[str, str]) -> dict[str, Any]:
    from wsgiref.util import setup_testing_defaults
    environ: dict[str, Any] = {'HTTP_USER_AGENT': 'bench/1.0', 'HTTP_ACCEPT': '*/*',
                               'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '54321'}
    setup_testing_defaults(environ)
    environ.update(extra)
    return environ


def run(number: int = 100_000) -> dict[str, Any]:
    from opentracing import Format

    from falcon_tracing_wsgi._wsgi import EnvironHeaders
    from falcon_tracing_wsgi.propagation import PROPAGATORS, build_propagator
    from falcon_tracing_wsgi.tracer.sampler import ConstSampler
    from falcon_tracing_wsgi.testing import InMemoryReporter
    from falcon_tracing_wsgi.tracer.tracer import Tracer

    rows = []
    for label, formats, incoming in CASES:
        formats = tuple(name for name in formats if name in PROPAGATORS)
        if not formats or (incoming is not None and incoming not in PROPAGATORS):
            continue
        tracer = Tracer(InMemoryReporter(), ConstSampler(True), build_propagator(formats))
        environ = _environ(HEADERS[incoming] if incoming else {})
        headers = EnvironHeaders(environ)
        context = tracer.extract(Format.HTTP_HEADERS, headers)
        if incoming is not None and context is None:
            raise RuntimeError(f'{label}: nothing extracted from {HEADERS[incoming]}')
        span = tracer.start_span('GET', child_of=context)
        child = span.context
        if incoming in ('baggage', 'jaeger') or 'baggage' in formats:
            child = child.with_baggage_item('user.id', '42')
        extract = tracer.extract
        inject = tracer.inject
        http = Format.HTTP_HEADERS
        env_view = EnvironHeaders
        t_extract = min(timeit.repeat(lambda: extract(http, env_view(environ)),
                                      number=number, repeat=5)) / number * 1e6
        t_inject = min(timeit.repeat(lambda: inject(child, http, {}),
                                     number=number, repeat=5)) / number * 1e6
        carrier: dict[str, str] = {}
        inject(child, http, carrier)
        rows.append({'case': label, 'extract_us': t_extract, 'inject_us': t_inject,
                     'injected': sorted(carrier)})
    return {'rows': rows, 'number': number}


def format_summary(result: dict[str, Any]) -> str:
    body = [[r['case'], f'{r["extract_us"]:.2f}', f'{r["inject_us"]:.2f}',
             ', '.join(r['injected'])] for r in result['rows']]
    return '\n'.join([
        f'Propagation, us per call (best of 5 x {result["number"]:,}; tracer.extract from a '
        'WSGI environ view, tracer.inject into a dict)', '',
        table(['formats (incoming)', 'extract', 'inject', 'headers injected'], body,
              align='lrrl')])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--quick', action='store_true', help='2,000 calls per figure')
    parser.add_argument('--json', help='write the result as JSON to this file')
    args = parser.parse_args()
    result = run(2_000 if args.quick else 100_000)
    print(format_summary(result))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
