"""The composite propagator and the registry of format names."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_tracing_wsgi import propagation
from falcon_tracing_wsgi.propagation import (PROPAGATORS, B3MultiPropagator,
                                             B3SinglePropagator, CompositePropagator,
                                             JaegerPropagator, TraceContextPropagator,
                                             W3CBaggagePropagator, build_propagator)
from falcon_tracing_wsgi.propagation.jaeger import DEBUG_ID_KEY
from falcon_tracing_wsgi.tracer.context import SpanContext

from ._checks import PROPERTY_SETTINGS, assert_valid_context

T32 = '4bf92f3577b34da6a3ce929d0e0e4736'
T16 = 'a3ce929d0e0e4736'
S1 = '00f067aa0ba902b7'
S2 = 'e457b5a2e4d86bd1'
B3_HEADERS = {'x-b3-traceid': T32, 'x-b3-spanid': S1, 'x-b3-sampled': '1'}
TRACEPARENT = f'00-{T32}-{S2}-01'
ALL = build_propagator(['b3', 'w3c', 'baggage', 'jaeger'])


# --- extraction rules -------------------------------------------------------------------

def test_first_format_that_names_a_span_wins():
    carrier = {**B3_HEADERS, 'traceparent': f'00-{"1" * 32}-{S2}-00'}
    assert build_propagator(['b3', 'w3c']).extract(carrier) == SpanContext(T32, S1, None, True)
    assert (build_propagator(['w3c', 'b3']).extract(carrier)
            == SpanContext('1' * 32, S2, None, False))


def test_invalid_format_falls_through_to_the_next():
    carrier = {'x-b3-traceid': 'garbage', 'x-b3-spanid': S1, 'traceparent': TRACEPARENT}
    assert ALL.extract(carrier) == SpanContext(T32, S2, None, True)


def test_a_span_beats_an_earlier_sampling_only_context():
    carrier = {'b3': '0', 'traceparent': TRACEPARENT}
    assert ALL.extract(carrier) == SpanContext(T32, S2, None, True)


def test_without_ids_the_first_decision_wins_and_baggage_is_merged():
    carrier = {'baggage': 'k=v', 'b3': '0'}
    assert ALL.extract(carrier) == SpanContext(None, None, None, False, baggage={'k': 'v'})


def test_baggage_only():
    assert ALL.extract({'baggage': 'k=v'}) == SpanContext(None, None, baggage={'k': 'v'})


def test_baggage_is_merged_and_the_earlier_format_wins_per_key():
    carrier = {**B3_HEADERS, 'baggage': 'a=from-w3c,b=from-w3c',
               'uberctx-b': 'from-jaeger', 'uberctx-c': 'from-jaeger'}
    context = build_propagator(['b3', 'baggage', 'jaeger']).extract(carrier)
    assert (context.trace_id, context.span_id) == (T32, S1)
    assert context.baggage == {'a': 'from-w3c', 'b': 'from-w3c', 'c': 'from-jaeger'}
    context = build_propagator(['b3', 'jaeger', 'baggage']).extract(carrier)
    assert context.baggage == {'a': 'from-w3c', 'b': 'from-jaeger', 'c': 'from-jaeger'}


@pytest.mark.parametrize('b3_trace, traceparent, kept', [
    pytest.param(T32, TRACEPARENT, True, id='same-trace'),
    pytest.param(T16, f'00-{"0" * 16}{T16}-{S2}-01', True, id='same-trace-64-bit-padded'),
    pytest.param(T16, TRACEPARENT, False, id='other-trace'),
])
def test_tracestate_is_kept_only_for_the_same_trace(b3_trace, traceparent, kept):
    carrier = {'x-b3-traceid': b3_trace, 'x-b3-spanid': S1, 'traceparent': traceparent,
               'tracestate': 'congo=t61rcWkgMzE'}
    context = build_propagator(['b3', 'w3c']).extract(carrier)
    assert (context.trace_id, context.span_id) == (b3_trace, S1)
    assert context.tracestate == ('congo=t61rcWkgMzE' if kept else None)


@pytest.mark.parametrize('b3_trace, traceparent, random', [
    pytest.param(T32, f'00-{T32}-{S2}-03', True, id='same-trace-random'),
    pytest.param(T16, f'00-{"0" * 16}{T16}-{S2}-02', True, id='same-trace-64-bit-random'),
    pytest.param(T32, f'00-{T32}-{S2}-01', False, id='same-trace-not-random'),
    pytest.param(T16, f'00-{T32}-{S2}-03', False, id='other-trace'),
])
def test_the_random_flag_of_the_same_trace_is_kept(b3_trace, traceparent, random):
    # B3 cannot say whether its id is random; W3C can, about the same id.
    carrier = {'x-b3-traceid': b3_trace, 'x-b3-spanid': S1, 'traceparent': traceparent}
    context = build_propagator(['b3', 'w3c']).extract(carrier)
    assert (context.trace_id, context.span_id) == (b3_trace, S1)
    assert context.random_trace_id is random


def test_the_winners_decision_is_not_merged():
    # A B3 deferral stays a deferral even though W3C (which cannot defer) says 00.
    carrier = {'x-b3-traceid': T32, 'x-b3-spanid': S1, 'traceparent': f'00-{T32}-{S1}-00'}
    assert build_propagator(['b3', 'w3c']).extract(carrier).sampled is None


def test_extra_of_an_id_less_context_is_merged():
    carrier = {'b3': '1', 'jaeger-debug-id': 'dbg'}
    context = build_propagator(['b3', 'jaeger']).extract(carrier)
    assert (context.sampled, context.debug) == (True, False)
    assert context.extra == {DEBUG_ID_KEY: 'dbg'}


def test_a_single_context_is_returned_as_is():
    found = SpanContext(T32, S1, None, True)

    class Fixed:
        fields = ()

        def extract(self, carrier):
            return found

        def inject(self, context, carrier):
            pass

    assert CompositePropagator([TraceContextPropagator(), Fixed()]).extract({}) is found
    assert ALL.extract({}) is None


# --- inject -----------------------------------------------------------------------------

def test_inject_writes_every_format():
    context = SpanContext(T16, S1, S2, True, baggage={'k': 'v'}, tracestate='congo=x')
    carrier = {}
    ALL.inject(context, carrier)
    assert carrier == {
        'X-B3-TraceId': T16, 'X-B3-SpanId': S1, 'X-B3-ParentSpanId': S2, 'X-B3-Sampled': '1',
        'traceparent': f'00-{"0" * 16}{T16}-{S1}-01', 'tracestate': 'congo=x',
        'baggage': 'k=v',
        'uber-trace-id': f'{T16}:{S1}:{S2}:01', 'uberctx-k': 'v',
    }


def test_round_trip_through_all_formats():
    context = SpanContext(T32, S1, S2, True, baggage={'k': 'v w'}, tracestate='a=1')
    carrier = {}
    ALL.inject(context, carrier)
    assert ALL.extract({name.lower(): value for name, value in carrier.items()}) == context


def test_fields_are_the_union_in_order():
    composite = build_propagator(['w3c', 'b3', 'b3single', 'jaeger'])
    assert composite.fields == ('traceparent', 'tracestate', 'b3', 'x-b3-traceid',
                                'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled',
                                'x-b3-flags', 'uber-trace-id', 'jaeger-debug-id')


def test_composite_needs_a_propagator():
    with pytest.raises(ValueError, match='at least one'):
        CompositePropagator([])


# --- registry ---------------------------------------------------------------------------

@pytest.mark.parametrize('name, cls', [
    pytest.param('b3', B3MultiPropagator, id='b3'),
    pytest.param('b3single', B3SinglePropagator, id='b3single'),
    pytest.param('w3c', TraceContextPropagator, id='w3c'),
    pytest.param('baggage', W3CBaggagePropagator, id='baggage'),
    pytest.param('jaeger', JaegerPropagator, id='jaeger'),
])
def test_one_name_builds_that_propagator(name, cls):
    assert type(build_propagator([name])) is cls
    assert PROPAGATORS[name] is cls


def test_registry_is_a_plain_dict_of_the_documented_names():
    assert type(PROPAGATORS) is dict
    assert sorted(PROPAGATORS) == ['b3', 'b3single', 'baggage', 'jaeger', 'w3c', 'xray']


@pytest.mark.parametrize('names, expected', [
    pytest.param(['b3', 'w3c'], [B3MultiPropagator, TraceContextPropagator], id='two'),
    pytest.param([' B3 ', 'W3C', 'b3'], [B3MultiPropagator, TraceContextPropagator],
                 id='case-space-and-repeats'),
    pytest.param('jaeger, baggage', [JaegerPropagator, W3CBaggagePropagator],
                 id='comma-separated-string'),
])
def test_several_names_build_a_composite_in_order(names, expected):
    composite = build_propagator(names)
    assert isinstance(composite, CompositePropagator)
    assert [type(p) for p in composite.propagators] == expected


def test_repeated_single_name_builds_that_propagator():
    assert type(build_propagator(['w3c', 'W3C'])) is TraceContextPropagator


@pytest.mark.parametrize('names', [
    pytest.param(['b3', 'zipkin'], id='unknown'),
    pytest.param([], id='empty'),
    pytest.param('', id='empty-string'),
])
def test_bad_names_raise_listing_the_valid_ones(names):
    with pytest.raises(ValueError, match='valid names are: b3, b3single, baggage, jaeger, w3c'):
        build_propagator(names)


def test_a_new_format_is_one_registry_entry(monkeypatch):
    class Custom:
        fields = ('x-custom',)

        def extract(self, carrier):
            value = carrier.get('x-custom')
            return None if value is None else SpanContext(None, None, baggage={'c': value})

        def inject(self, context, carrier):
            carrier['X-Custom'] = 'yes'

    monkeypatch.setitem(PROPAGATORS, 'custom', Custom)
    composite = build_propagator(['w3c', 'custom'])
    assert composite.extract({'traceparent': TRACEPARENT, 'x-custom': '1'}).baggage == {'c': '1'}


def test_public_names():
    assert set(propagation.__all__) == {
        'B3MultiPropagator', 'B3SinglePropagator', 'TraceContextPropagator',
        'W3CBaggagePropagator', 'JaegerPropagator', 'XRayPropagator', 'CompositePropagator',
        'PROPAGATORS',
        'build_propagator'}


@pytest.mark.parametrize('first', ['falcon_tracing_wsgi.propagation',
                                   'falcon_tracing_wsgi.tracer'])
def test_importing_propagation_or_tracer_first_works(first):
    # propagation imports tracer.context: this guards against an import cycle.
    code = (f'import {first}; import falcon_tracing_wsgi.propagation as p; '
            'import falcon_tracing_wsgi.tracer; print(sorted(p.PROPAGATORS))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'w3c' in result.stdout


# --- property ---------------------------------------------------------------------------

_NAMES = ['b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled',
          'x-b3-flags', 'traceparent', 'tracestate', 'baggage', 'uber-trace-id',
          'jaeger-debug-id', 'uberctx-k']
_near_valid = st.sampled_from([T32, T16, S1, '0', '1', 'd', TRACEPARENT, 'k=v', 'a=1',
                               f'{T16}:{S1}:0:1', f'{T32}-{S1}-1'])


@PROPERTY_SETTINGS
@given(headers=st.dictionaries(st.sampled_from(_NAMES), st.one_of(st.text(), _near_valid)))
def test_any_header_text_gives_none_or_a_valid_context(headers):
    context = ALL.extract(headers)
    assert_valid_context(context)
    if context is not None:
        carrier = {}
        ALL.inject(context, carrier)
        assert_valid_context(ALL.extract({k.lower(): v for k, v in carrier.items()}))


# --- the ids guarantee ------------------------------------------------------------------

class _Foreign:
    """A format of someone else's: it does not say that it checks ids."""

    fields = ('x-foreign',)

    def extract(self, carrier):
        return None

    def inject(self, context, carrier):
        pass


@pytest.mark.parametrize('name', sorted(PROPAGATORS))
def test_every_built_in_format_says_it_checks_ids(name):
    # The tracer then hands its contexts on unchecked (the property tests in each
    # format's module show that every context they extract has valid ids).
    assert PROPAGATORS[name]().checks_ids is True
    assert build_propagator([name]).checks_ids is True


@pytest.mark.parametrize('parts, checks', [
    pytest.param(lambda: [B3MultiPropagator(), TraceContextPropagator()], True,
                 id='built-in-formats'),
    pytest.param(lambda: [B3MultiPropagator(), _Foreign()], False, id='one-foreign-format'),
    pytest.param(lambda: [_Foreign()], False, id='only-foreign'),
])
def test_the_composite_checks_ids_only_when_every_format_does(parts, checks):
    assert CompositePropagator(parts()).checks_ids is checks
