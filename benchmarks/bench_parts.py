"""Where a request's instructions go, part by part: this package against the floor
yardstick of each path issue 15 budgets (a sampled new trace, an unsampled one, an
excluded request).

``bench_instructions.py`` counts whole requests; this counts the parts of one, each
where it runs (in situ, warm, with the real objects around it), for ``wrap()`` and for
its floor (``floor.py``: the same job written as cheaply as Python allows;
``floor_complete``, ``floor_unsampled``, ``floor_excluded``), so the distance between
them is told part by part, not guessed.

Method:

* A part is one callable on the request path: the WSGI wrapper's call, the app it
  wraps, the package's ``start`` (ids, decision, context, span, headers, URL, peer), the
  Falcon component's two hooks, ``start_response``, the response's ``__iter__`` and
  ``close()`` (the finish, the span's name, the report). For one run the part is called
  through :func:`operator.call` (a method: its class gets a function that does), and
  callgrind runs with ``--toggle-collect=_operator_call``: only the instructions
  executed inside that C function are counted, everything the part does and calls,
  nothing else. Nothing else on the path calls ``operator.call``: a control run with no
  part routed (``none``) must count nothing. ``operator.call``'s own work is a few
  dozen instructions, counted in each part.
* Each part is counted in two runs of different lengths, after warm-up; per request::

      (Ir(long) - Ir(short)) / (long - short)

  with ``PYTHONHASHSEED=0``, so the counts repeat to within a few instructions.
* ``FALCON_TRACING_REPORTER=none``: the span is finished and handed to a reporter that
  drops it. Export (encoding, queue, worker, HTTP) is per span and the same for both
  (``bench_reporter.py --instructions``); this is the request path.
* ``total`` is the whole request loop counted normally (the difference of the two runs),
  and ``unattributed`` what no part holds: the deallocation of the request's objects
  when the server lets go of the response and the environ, and the server loop's own
  ``getattr(result, 'close')``.
* A part that counts nearly nothing was not reached (a renamed method, a path not
  taken): the run fails rather than print a zero.

Run: ``python benchmarks/bench_parts.py [--jobs 2]`` (about 3 minutes with 2 jobs).
Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import operator
from typing import Any, Callable, Optional

from _common import HERE, PYTHON, ROOT, table

ROUTES = ('/hello', '/users/42')
#: (warmup, short, long) requests per route.
SIZES = (50, 100, 300)
VARIANTS = ('bare', 'traced', 'floor_complete', 'unsampled', 'floor_unsampled', 'excluded',
            'floor_excluded')
#: The parts each variant has (``total`` and ``request`` for all). An unsampled or
#: excluded request of a list body has no response object: the app's own list goes back.
PARTS = {
    'bare': ('total', 'none', 'request', 'start_response'),
    'traced': ('total', 'none', 'request', 'app', 'start', 'hooks', 'start_response',
               'iter', 'close'),
    'floor_complete': ('total', 'none', 'request', 'app', 'hooks', 'start_response',
                       'iter', 'close'),
    'unsampled': ('total', 'none', 'request', 'app', 'start', 'hooks'),
    'floor_unsampled': ('total', 'none', 'request', 'app', 'hooks'),
    'excluded': ('total', 'none', 'request', 'app', 'hooks'),
    'floor_excluded': ('total', 'none', 'request', 'app', 'hooks'),
}
#: The variants that run this package (the others are bare Falcon or floor.py's).
PACKAGE = ('traced', 'unsampled', 'excluded')
#: operator.call (Python 3.11+); None on older versions, where this cannot measure.
_call: Optional[Callable[..., Any]] = getattr(operator, 'call', None)
#: Below this many instructions per request a part was not reached (``none``: above it,
#: something else on the path calls operator.call).
_REACHED = 100


# -- the child: one run, one part called through operator.call --------------------------

def _measured(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, called through :func:`operator.call` (a plain function, so it binds
    as a method where ``function`` did)."""
    call = _call
    assert call is not None  # main() refuses to run without it

    def measured(*args: Any) -> Any:
        return call(function, *args)
    measured.__name__ = getattr(function, '__name__', 'measured')
    return measured


def _classes(variant: str) -> dict[str, tuple[type, tuple[str, ...]]]:
    """part -> (class, method names) of the methods that make the part."""
    if variant in PACKAGE:
        from falcon_tracing_wsgi._wsgi import TracedResponse
        from falcon_tracing_wsgi.integrations.falcon import TracingComponent
        component: type = TracingComponent
        start_response: type = TracedResponse
        iterable: type = TracedResponse
        closing: type = TracedResponse
    else:
        import floor
        component = floor.CompleteFloorComponent
        start_response = closing = floor._CompleteResponse
        iterable = floor._KeptResponse
    return {'hooks': (component, ('process_request', 'process_resource')),
            'start_response': (start_response, ('start_response',)),
            'iter': (iterable, ('__iter__',)),
            'close': (closing, ('close',))}


def child(variant: str, part: str, requests: int, warmup: int) -> None:
    """Build ``variant`` with ``part`` called through operator.call; run the requests."""
    from apps import build
    from bench_instructions import _environ, _start_response

    methods = _classes(variant).get(part) if variant != 'bare' else None
    sr = _start_response
    if variant == 'bare' and part == 'start_response':
        sr = _measured(sr)  # the server's own, which the others' include
    if methods is not None:  # before the app is built: Falcon binds the hooks then
        cls, names = methods
        for name in names:
            # The function itself, from the class that defines it (an inherited hook is
            # routed on the class the app uses, and only there).
            function = next(k.__dict__[name] for k in cls.__mro__ if name in k.__dict__)
            setattr(cls, name, _measured(function))
    app, _finish = build(variant)
    wrapper: Any = app
    if part == 'request':
        app = _measured(app)
    elif part == 'app':
        wrapper.app = _measured(wrapper.app)
    for count in (warmup, requests):
        for path in ROUTES:
            base = _environ(path)
            for _ in range(count):
                environ = base.copy()
                result = app(environ, sr)
                if count == warmup:  # the same in both runs: it cancels out
                    _check(variant, environ, result)
                    if part == 'start':
                        _measure_start(wrapper)
                for _chunk in result:
                    pass
                close = getattr(result, 'close', None)
                if close is not None:
                    close()


def _check(variant: str, environ: dict[str, Any], result: Any) -> None:
    """Fail the run if the request did not take ``variant``'s path (a setting lost)."""
    from falcon_tracing_wsgi.tracer.span import UnsampledSpan

    span = environ.get('floor.span', environ.get('falcon_tracing_wsgi.span'))
    if variant in ('traced', 'floor_complete'):
        taken = span is not None and type(span) is not UnsampledSpan
    elif variant in ('unsampled', 'floor_unsampled'):
        taken = type(span) is UnsampledSpan and type(result) is list
    elif variant in ('excluded', 'floor_excluded'):
        taken = span is None and type(result) is list
    else:
        taken = span is None
    if not taken:
        raise RuntimeError(f'{variant}: the request did not take its path '
                           f'(span {span!r}, body {type(result).__name__})')


def _measure_start(wrapper: Any) -> None:
    """Call the package's bound ``start(environ)`` through operator.call (once bound)."""
    bound = wrapper._bound
    if getattr(bound[1], '__name__', None) != 'measured_start':
        start = _measured(bound[1])
        start.__name__ = 'measured_start'
        wrapper._bound = (bound[0], start) + tuple(bound[2:])


# -- the parent -------------------------------------------------------------------------

def child_env(variant: str) -> dict[str, str]:
    """The environment of ``variant``'s runs: its settings (``apps.VARIANT_ENV``: the
    sampling rate, the exclusion rules), no export."""
    from apps import VARIANT_ENV

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('FALCON_TRACING_', 'OTEL_'))}
    env.update({'PYTHONHASHSEED': '0', 'FALCON_TRACING_SERVICE_NAME': 'bench',
                'FALCON_TRACING_SAMPLE_RATE': '1',
                'PYTHONPATH': os.pathsep.join([str(HERE), str(ROOT)])})
    env.update(VARIANT_ENV.get(variant, {}))
    env['FALCON_TRACING_REPORTER'] = 'none'
    return env


def _run(variant: str, part: str, requests: int, warmup: int, directory: Path) -> int:
    """One callgrind run; its instruction count (inside operator.call, or all for total)."""
    out = directory / f'callgrind.{variant}.{part}.{requests}'
    command = ['valgrind', '--tool=callgrind', '-q', f'--callgrind-out-file={out}']
    if part != 'total':
        command.append('--toggle-collect=_operator_call')
    command += [PYTHON, str(HERE / 'bench_parts.py'), '--child', variant, part,
                str(requests), str(warmup)]
    done = subprocess.run(command, env=child_env(variant), capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f'{variant} {part}: exit {done.returncode}\n{done.stderr[-3000:]}')
    for line in out.read_text().splitlines():
        if line.startswith(('totals:', 'summary:')):
            out.unlink()
            return int(line.split()[1])
    raise RuntimeError(f'no totals in {out}')


def measure(jobs: int, sizes: tuple[int, int, int] = SIZES) -> dict[str, dict[str, float]]:
    """variant -> part -> instructions per request."""
    warmup, short, long = sizes
    runs = [(variant, part, count) for variant in VARIANTS for part in PARTS[variant]
            for count in (short, long)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        counts = dict(zip(runs, pool.map(
            lambda run: _run(run[0], run[1], run[2], warmup, Path(tmp)), runs)))
    requests = (long - short) * len(ROUTES)
    figures: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        figures[variant] = parts = {}
        for part in PARTS[variant]:
            parts[part] = (counts[(variant, part, long)]
                           - counts[(variant, part, short)]) / requests
            if part == 'none' and parts[part] >= _REACHED:
                raise RuntimeError(f'{variant}: {parts[part]:.0f} instructions per request '
                                   f'inside operator.call with no part routed: something '
                                   f'else on the path calls it')
            if part != 'none' and parts[part] < _REACHED:
                raise RuntimeError(f'{variant}: the part {part!r} was not reached '
                                   f'({parts[part]:.0f} instructions per request)')
    return figures


#: What each part counted holds, in table order (the table's rows).
_LABELS = (
    ('start', 'wrapper: start() (ids, decision, context, span, headers; URL, peer if sampled)'),
    ('rest', 'wrapper: the rest of __call__ (exclusion test, activation, response object)'),
    ('before', 'wrapper: __call__ without the app, in all'),
    ('hooks', 'Falcon component: process_request + process_resource'),
    ('start_response', "start_response, beyond the server's own"),
    ('falcon', "Falcon's own work beyond bare (calling the hooks)"),
    ('iter', '__iter__'),
    ('close', 'close(): finish, name, report (the reporter drops the span)'),
    ('unattributed', "unattributed: deallocation, the server loop's own calls"),
    ('total', '**request path over bare** (no export)'),
)


def _derived(parts: dict[str, float], bare: dict[str, float]) -> dict[str, Optional[float]]:
    """One variant's parts as the table's rows (None: a part its path does not have)."""
    start = parts.get('start')
    before = parts['request'] - parts['app']
    # The server's own start_response is inside ours: counted once, in Falcon's. A
    # request without a response object (unsampled, excluded) hands the server's own to
    # the app, as bare does.
    start_response = (parts['start_response'] - bare['start_response']
                      if 'start_response' in parts else None)
    falcon = parts['app'] - parts['hooks'] - (start_response or 0) - bare['request']
    total = parts['total'] - bare['total']
    iterated, closed = parts.get('iter'), parts.get('close')
    return {'start': start, 'rest': before - start if start is not None else None,
            'before': before, 'hooks': parts['hooks'], 'start_response': start_response,
            'falcon': falcon, 'iter': iterated, 'close': closed,
            'unattributed': (total - before - parts['hooks'] - (start_response or 0)
                             - falcon - (iterated or 0) - (closed or 0)),
            'total': total}


def rows(figures: dict[str, dict[str, float]], package: str = 'traced',
         floor: str = 'floor_complete') -> list[list[Any]]:
    """The table of one path: each part, the package's ``package`` variant beside its
    floor ``floor`` and the gap; a part neither has is left out."""
    ours = _derived(figures[package], figures['bare'])
    least = _derived(figures[floor], figures['bare'])
    out = []
    for key, label in _LABELS:
        mine, yardstick = ours[key], least[key]
        if mine is None and yardstick is None:
            continue
        out.append([label, mine, yardstick, mine - yardstick
                    if mine is not None and yardstick is not None else None])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--jobs', type=int, default=1, help='callgrind runs at once')
    parser.add_argument('--child', nargs=4, metavar=('VARIANT', 'PART', 'REQUESTS',
                                                     'WARMUP'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, part, requests, warmup = args.child
        child(variant, part, int(requests), int(warmup))
        return
    if shutil.which('valgrind') is None:
        sys.exit('valgrind is not installed (apt-get install valgrind)')
    if _call is None:
        sys.exit('bench_parts.py needs Python 3.11 or later (operator.call)')
    figures = measure(args.jobs)
    warmup, short, long = SIZES
    print(f'Instructions per request by part, counted in situ by callgrind '
          f'(--toggle-collect=_operator_call; (Ir({long}) - Ir({short})) / '
          f'{(long - short) * len(ROUTES)} requests after {warmup} warm-up requests per '
          f'route; sampled, FALCON_TRACING_REPORTER=none)\n')
    print(table(['part (sampled request, new trace)', 'wrap()', 'floor_complete', 'gap'],
                rows(figures)))
    for package, floor, what in (('unsampled', 'floor_unsampled',
                                  'unsampled request, new trace (FALCON_TRACING_SAMPLE_RATE=0)'),
                                 ('excluded', 'floor_excluded',
                                  'excluded request (FALCON_TRACING_EXCLUDE)')):
        print()
        print(table([f'part ({what})', 'wrap()', floor, 'gap'],
                    rows(figures, package, floor)))
    print(f"\n  bare Falcon: {figures['bare']['total']:,.0f} instructions per request "
          f"(the app's call {figures['bare']['request']:,.0f})")


if __name__ == '__main__':
    main()
