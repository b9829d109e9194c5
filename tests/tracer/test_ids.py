"""Ids: exact width, lower-case hex, never zero, and different in a forked child."""

from __future__ import annotations

import os
import re

import pytest

from falcon_tracing_wsgi.tracer import ids
from falcon_tracing_wsgi.tracer.ids import (RandomIdGenerator, new_span_id, new_trace_id_64,
                                            new_trace_id_128, new_trace_ids_64,
                                            new_trace_ids_128)

_DRAWS = 2000


@pytest.mark.parametrize('draw, width', [
    pytest.param(new_span_id, 16, id='span-id'),
    pytest.param(new_trace_id_64, 16, id='trace-id-64'),
    pytest.param(new_trace_id_128, 32, id='trace-id-128'),
    pytest.param(RandomIdGenerator().trace_id, 32, id='generator-default-128'),
    pytest.param(RandomIdGenerator(trace_id_128bit=False).trace_id, 16, id='generator-64'),
    pytest.param(RandomIdGenerator().span_id, 16, id='generator-span'),
])
def test_ids_are_lower_case_hex_of_exact_width(draw, width):
    """Every id is exactly `width` lower-case hex digits, non-zero, and draws differ."""
    pattern = re.compile('[0-9a-f]{%d}' % width)
    drawn = [draw() for _ in range(_DRAWS)]
    assert all(pattern.fullmatch(value) for value in drawn)
    assert all(int(value, 16) for value in drawn)
    assert len(set(drawn)) == _DRAWS


@pytest.mark.parametrize('draw, width', [
    pytest.param(new_span_id, 16, id='span-id'),
    pytest.param(new_trace_id_64, 16, id='trace-id-64'),
    pytest.param(new_trace_id_128, 32, id='trace-id-128'),
])
def test_a_zero_draw_is_redrawn(monkeypatch, draw, width):
    """A zero from the generator is never returned; small values keep their leading zeros."""
    draws = iter([0, 0, 5])
    monkeypatch.setattr(ids, '_getrandbits', lambda bits: next(draws))
    assert draw() == '5'.rjust(width, '0')


def test_one_getrandbits_call_per_id(monkeypatch):
    """The fast path asks the generator once per id, for the right number of bits."""
    calls = []

    def fake(bits):
        calls.append(bits)
        return 1

    monkeypatch.setattr(ids, '_getrandbits', fake)
    new_span_id()
    new_trace_id_64()
    new_trace_id_128()
    assert calls == [64, 64, 128]


@pytest.mark.parametrize('draw, width', [
    pytest.param(new_trace_ids_128, 32, id='pair-128'),
    pytest.param(new_trace_ids_64, 16, id='pair-64'),
    pytest.param(RandomIdGenerator().trace_ids, 32, id='generator-pair-128'),
    pytest.param(RandomIdGenerator(trace_id_128bit=False).trace_ids, 16, id='generator-pair-64'),
])
def test_trace_id_pairs_are_hex_of_exact_width_and_distinct(draw, width):
    drawn = [draw() for _ in range(_DRAWS)]
    trace = re.compile('[0-9a-f]{%d}' % width)
    span = re.compile('[0-9a-f]{16}')
    assert all(trace.fullmatch(t) and span.fullmatch(s) for t, s in drawn)
    assert all(int(t, 16) and int(s, 16) for t, s in drawn)
    assert len({t for t, _ in drawn}) == len({s for _, s in drawn}) == _DRAWS


@pytest.mark.parametrize('draw, first_draw, expected', [
    # One draw whose span-id half is zero: both ids are drawn again, one by one.
    pytest.param(new_trace_ids_128, 7 << 64, ('5'.rjust(32, '0'), '6'.rjust(16, '0')),
                 id='128-zero-span-half'),
    pytest.param(new_trace_ids_128, 7, ('5'.rjust(32, '0'), '6'.rjust(16, '0')),
                 id='128-zero-trace-half'),
    pytest.param(new_trace_ids_64, 7, ('5'.rjust(16, '0'), '6'.rjust(16, '0')),
                 id='64-zero-trace-half'),
    pytest.param(new_trace_ids_128, (3 << 64) | 4, ('3'.rjust(32, '0'), '4'.rjust(16, '0')),
                 id='128-no-zero'),
])
def test_a_zero_half_of_a_pair_is_redrawn(monkeypatch, draw, first_draw, expected):
    draws = iter([first_draw, 5, 6])
    monkeypatch.setattr(ids, '_getrandbits', lambda bits: next(draws))
    assert draw() == expected


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_forked_child_draws_different_ids_than_its_parent():
    """After a real fork, parent and child draw different ids (CPython reseeds random)."""
    count = 50
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            payload = ' '.join(new_span_id() + ':' + new_trace_id_128() for _ in range(count))
            os.write(write_end, payload.encode('ascii'))
            os.close(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    parent = {new_span_id() + ':' + new_trace_id_128() for _ in range(count)}
    chunks = []
    with os.fdopen(read_end, 'rb') as reader:
        chunks.append(reader.read())
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    child = set(b''.join(chunks).decode('ascii').split())
    assert len(child) == count
    assert parent.isdisjoint(child)


@pytest.mark.parametrize('trace_id_128bit, first_draw, expected', [
    pytest.param(True, 7 << 64, ('5'.rjust(32, '0'), '6'.rjust(16, '0')),
                 id='128-zero-span-half'),
    pytest.param(True, 7, ('5'.rjust(32, '0'), '6'.rjust(16, '0')), id='128-zero-trace-half'),
    pytest.param(False, 7, ('5'.rjust(16, '0'), '6'.rjust(16, '0')), id='64-zero-trace-half'),
    pytest.param(True, (3 << 64) | 4, ('3'.rjust(32, '0'), '4'.rjust(16, '0')),
                 id='128-no-zero'),
    pytest.param(False, (3 << 64) | 4, ('3'.rjust(16, '0'), '4'.rjust(16, '0')),
                 id='64-no-zero'),
])
def test_the_tracers_inlined_draw_of_a_new_trace(monkeypatch, trace_id_128bit, first_draw,
                                                  expected):
    """The tracer draws a new trace's ids itself (ids.ONE_DRAW): the same ids as the
    drawer, and a zero half drawn again by the drawer."""
    from falcon_tracing_wsgi.propagation import build_propagator
    from falcon_tracing_wsgi.testing import InMemoryReporter
    from falcon_tracing_wsgi.tracer import ConstSampler, Tracer
    from falcon_tracing_wsgi.tracer import tracer as tracer_module

    tracer = Tracer(InMemoryReporter(), ConstSampler(True), build_propagator(('b3',)),
                    id_generator=RandomIdGenerator(trace_id_128bit))
    first = iter([first_draw])
    monkeypatch.setattr(tracer_module, '_getrandbits', lambda bits: next(first))
    # The drawer's own draw (a zero trace half again), then one id at a time.
    redraws = iter([7, 5, 6])
    monkeypatch.setattr(ids, '_getrandbits', lambda bits: next(redraws))
    context = tracer.start_span('root').context
    assert (context.trace_id, context.span_id) == expected
