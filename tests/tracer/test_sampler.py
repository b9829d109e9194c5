"""Samplers: constant, probabilistic from the trace id, rate limiting with a fake clock."""

from __future__ import annotations

import math
import random
import threading

import pytest

from falcon_tracing_wsgi.tracer.sampler import (ConstSampler, ProbabilisticSampler,
                                                RateLimitingSampler, build_sampler)

from .fakes import ManualClock, RecordingSampler

# A fixed, reproducible population of 128-bit trace ids.
_RANDOM = random.Random(20240601)
_TRACE_IDS = ['%032x' % _RANDOM.getrandbits(128) for _ in range(20000)]


@pytest.mark.parametrize('decision', [pytest.param(True, id='true'),
                                      pytest.param(False, id='false')])
def test_const_sampler_always_answers_its_decision(decision):
    sampler = ConstSampler(decision)
    assert {sampler.is_sampled(trace_id, 'op') for trace_id in _TRACE_IDS[:100]} == {decision}


@pytest.mark.parametrize('rate, low, high', [
    pytest.param(0.0, 0.0, 0.0, id='rate-0-samples-none'),
    pytest.param(1.0, 1.0, 1.0, id='rate-1-samples-all'),
    pytest.param(0.5, 0.48, 0.52, id='rate-half'),
    pytest.param(0.1, 0.09, 0.11, id='rate-tenth'),
    pytest.param(0.001, 0.0, 0.003, id='rate-thousandth'),
])
def test_probabilistic_sampler_samples_its_rate(rate, low, high):
    """On a fixed population of ids the sampled fraction matches the rate."""
    sampler = ProbabilisticSampler(rate)
    fraction = sum(sampler.is_sampled(t, 'op') for t in _TRACE_IDS) / len(_TRACE_IDS)
    assert low <= fraction <= high


@pytest.mark.parametrize('trace_id, expected', [
    pytest.param('0000000000000001', True, id='smallest-64'),
    pytest.param('7fffffffffffffff', True, id='just-below-half'),
    pytest.param('8000000000000000', False, id='exactly-half'),
    pytest.param('ffffffffffffffff', False, id='largest-64'),
    pytest.param('ffffffffffffffff0000000000000001', True, id='high-bits-ignored-sampled'),
    pytest.param('00000000000000018000000000000000', False, id='high-bits-ignored-unsampled'),
    pytest.param('not-hex-at-all!!', False, id='bad-id-not-sampled'),
])
def test_probabilistic_sampler_decides_from_the_low_64_bits(trace_id, expected):
    assert ProbabilisticSampler(0.5).is_sampled(trace_id, 'op') is expected


def test_rate_one_samples_the_largest_id():
    assert ProbabilisticSampler(1.0).is_sampled('f' * 32, 'op') is True


def test_probabilistic_decisions_agree_and_nest_across_services():
    """Two services with one rate agree; a higher rate samples a superset."""
    low, same = ProbabilisticSampler(0.2), ProbabilisticSampler(0.2)
    high = ProbabilisticSampler(0.6)
    low_set = {t for t in _TRACE_IDS if low.is_sampled(t, 'a')}
    assert low_set == {t for t in _TRACE_IDS if same.is_sampled(t, 'b')}
    assert low_set < {t for t in _TRACE_IDS if high.is_sampled(t, 'a')}


@pytest.mark.parametrize('rate', [
    pytest.param(-0.1, id='negative'),
    pytest.param(1.5, id='above-one'),
    pytest.param(math.nan, id='nan'),
    pytest.param('0.5', id='string'),
    pytest.param(True, id='bool'),
    pytest.param(None, id='none'),
])
def test_probabilistic_sampler_rejects_bad_rates(rate):
    with pytest.raises(ValueError, match='from 0.0 to 1.0'):
        ProbabilisticSampler(rate)


def test_rate_limiter_spends_a_burst_then_refills_with_time():
    """Two traces per second: a burst of two, then one more every half second."""
    clock = ManualClock()
    sampler = RateLimitingSampler(ConstSampler(True), 2, clock=clock)
    assert [sampler.is_sampled('1' * 32, 'op') for _ in range(3)] == [True, True, False]
    clock.advance(0.25)
    assert sampler.is_sampled('1' * 32, 'op') is False
    clock.advance(0.25)
    assert [sampler.is_sampled('1' * 32, 'op') for _ in range(2)] == [True, False]
    clock.advance(60)  # a long quiet period refills to the cap (one second's worth) only
    assert [sampler.is_sampled('1' * 32, 'op') for _ in range(3)] == [True, True, False]


def test_rate_limiter_below_one_trace_per_second():
    """0.5 traces per second: one now, then one every two seconds."""
    clock = ManualClock()
    sampler = RateLimitingSampler(ConstSampler(True), 0.5, clock=clock)
    assert [sampler.is_sampled('1' * 32, 'op') for _ in range(2)] == [True, False]
    clock.advance(1.0)
    assert sampler.is_sampled('1' * 32, 'op') is False
    clock.advance(1.0)
    assert sampler.is_sampled('1' * 32, 'op') is True


def test_rate_limiter_asks_the_inner_sampler_first_and_spends_no_token_on_a_no():
    clock = ManualClock()
    inner = RecordingSampler(False, False, True, True)
    sampler = RateLimitingSampler(inner, 1, clock=clock)
    assert [sampler.is_sampled('%032x' % n, 'op') for n in (1, 2, 3, 4)] == [
        False, False, True, False]
    assert inner.calls == [('%032x' % n, 'op') for n in (1, 2, 3, 4)]


def test_rate_limiter_never_hands_out_more_tokens_than_it_has_across_threads():
    """With the clock frozen, 8 threads x 500 calls get exactly the 100-token burst."""
    sampler = RateLimitingSampler(ConstSampler(True), 100, clock=ManualClock())
    start = threading.Barrier(8)
    results: list[list[bool]] = [[] for _ in range(8)]

    def worker(out: list[bool]) -> None:
        start.wait(timeout=10)
        out.extend(sampler.is_sampled('1' * 32, 'op') for _ in range(500))

    threads = [threading.Thread(target=worker, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sum(sum(out) for out in results) == 100


@pytest.mark.parametrize('per_second', [
    pytest.param(0, id='zero'),
    pytest.param(-1, id='negative'),
    pytest.param(math.inf, id='infinite'),
    pytest.param(math.nan, id='nan'),
    pytest.param('10', id='string'),
])
def test_rate_limiter_rejects_bad_limits(per_second):
    with pytest.raises(ValueError, match='traces_per_second'):
        RateLimitingSampler(ConstSampler(True), per_second)


@pytest.mark.parametrize('rate, rate_limit, expected', [
    pytest.param(1.0, 0, 'ConstSampler(True)', id='all'),
    pytest.param(1, 0, 'ConstSampler(True)', id='all-int'),
    pytest.param(0.0, 0, 'ConstSampler(False)', id='none'),
    pytest.param(0.0, 50, 'ConstSampler(False)', id='none-limit-irrelevant'),
    pytest.param(0.25, 0, 'ProbabilisticSampler(0.25)', id='fraction'),
    pytest.param(1.0, 10, 'RateLimitingSampler(ConstSampler(True), 10.0)', id='all-limited'),
    pytest.param(0.25, 2.5, 'RateLimitingSampler(ProbabilisticSampler(0.25), 2.5)',
                 id='fraction-limited'),
])
def test_build_sampler_picks_the_cheapest_correct_sampler(rate, rate_limit, expected):
    assert repr(build_sampler(rate, rate_limit)) == expected


@pytest.mark.parametrize('rate, rate_limit, message', [
    pytest.param(1.5, 0, 'sampling rate', id='rate-above-one'),
    pytest.param(-1, 0, 'sampling rate', id='rate-negative'),
    pytest.param(0.5, -1, 'rate_limit', id='limit-negative'),
    pytest.param(0.5, math.inf, 'rate_limit', id='limit-infinite'),
    pytest.param(0.5, math.nan, 'rate_limit', id='limit-nan'),
])
def test_build_sampler_rejects_bad_settings(rate, rate_limit, message):
    with pytest.raises(ValueError, match=message):
        build_sampler(rate, rate_limit)


@pytest.mark.parametrize('trace_id_128bit', [True, False], ids=['128-bit', '64-bit'])
@pytest.mark.parametrize('rate', [0.0001, 0.3, 0.5, 0.9999])
def test_the_tracers_inlined_probabilistic_decision_is_the_samplers(trace_id_128bit, rate):
    """A new trace's decision, which the tracer reads from its drawn ids for this
    package's ProbabilisticSampler, is the sampler's own for the trace id it made."""
    from falcon_tracing_wsgi.propagation import build_propagator
    from falcon_tracing_wsgi.testing import InMemoryReporter
    from falcon_tracing_wsgi.tracer import RandomIdGenerator, Tracer

    sampler = ProbabilisticSampler(rate)
    tracer = Tracer(InMemoryReporter(), sampler, build_propagator(('b3',)),
                    id_generator=RandomIdGenerator(trace_id_128bit))
    random.seed(rate)  # the module's generator, which the tracer draws from
    contexts = [tracer.start_span('root').context for _ in range(2000)]
    decisions = [context.sampled for context in contexts]
    assert decisions == [sampler.is_sampled(context.trace_id, 'root')
                         for context in contexts]
    if 0.1 < rate < 0.9:  # both answers given, so a constant one would fail
        assert True in decisions and False in decisions
