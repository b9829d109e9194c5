"""``benchmarks/bench_parts.py`` measures what it says: every part it names is reached
through ``operator.call`` on each request, and nothing else on the path calls it.

callgrind counts only what runs inside ``operator.call``, so a part that is never routed
(a renamed method, a path the request no longer takes) would print a small number
instead of failing; here each part's child runs natively, with ``operator.call``
counted, for each variant.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / 'benchmarks'
sys.path.insert(0, str(BENCHMARKS))
from bench_parts import PARTS, ROUTES, child_env  # noqa: E402

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason='operator.call: 3.11+')

#: Requests per route after the warm-up one.
_REQUESTS = 3
#: Calls of a part per request.
_CALLS = {'hooks': 2}

_CHILD = '''
import sys
import bench_parts
real = bench_parts._call
calls = [0]
def counting(function, *args):
    calls[0] += 1
    return real(function, *args)
bench_parts._call = counting
bench_parts.child(sys.argv[1], sys.argv[2], int(sys.argv[3]), 1)
print(calls[0])
'''

CASES = [pytest.param(variant, part, id=f'{variant}-{part}')
         for variant, parts in PARTS.items() for part in parts if part != 'total']


@pytest.mark.parametrize('variant, part', CASES)
def test_each_part_is_routed_on_every_request(variant, part):
    env = child_env(variant)  # the benchmark's own: the variant's rate and exclusions
    done = subprocess.run([sys.executable, '-c', _CHILD, variant, part, str(_REQUESTS)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    calls = int(done.stdout.split()[-1])
    measured = _REQUESTS * len(ROUTES) * _CALLS.get(part, 1)
    if part == 'none':
        assert calls == 0
    elif part == 'start':  # routed once bound, during the warm-up request
        assert calls >= measured
    else:
        assert calls == measured + len(ROUTES) * _CALLS.get(part, 1)  # warm-up too
