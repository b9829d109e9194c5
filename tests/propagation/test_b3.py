"""B3 propagation: both encodings, extracted by both propagators (rule ids: B3 checklist)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_tracing_wsgi.propagation import B3MultiPropagator, B3SinglePropagator
from falcon_tracing_wsgi.tracer.context import SpanContext

from ._checks import HUGE_SIZE, PROPERTY_SETTINGS, assert_bounded, assert_valid_context

T32 = '80f198ee56343ba864fe8b2a57d3eff7'
T16 = '64fe8b2a57d3eff7'
S = 'e457b5a2e4d86bd1'
P = '05e3ac9a4f6e3b90'
MULTI, SINGLE = B3MultiPropagator(), B3SinglePropagator()
BOTH = [pytest.param(MULTI, id='multi'), pytest.param(SINGLE, id='single')]


def lowered(headers):
    """What the tracer hands a propagator: header names in lower case."""
    return {name.lower(): value for name, value in headers.items()}


# --- the spec example ---------------------------------------------------------------

B3_7_MULTI = {'x-b3-traceid': T32, 'x-b3-parentspanid': P, 'x-b3-spanid': S,
              'x-b3-sampled': '1'}
B3_7_SINGLE = f'{T32}-{S}-1-{P}'


@pytest.mark.parametrize('propagator', BOTH)
def test_b3_7_example_both_encodings_give_the_same_context(propagator):
    expected = SpanContext(T32, S, P, True)
    assert propagator.extract(B3_7_MULTI) == expected
    assert propagator.extract({'b3': B3_7_SINGLE}) == expected


def test_b3_7_example_injects_the_documented_values():
    context = MULTI.extract(B3_7_MULTI)
    single, multi = {}, {}
    SINGLE.inject(context, single)
    MULTI.inject(context, multi)
    assert single == {'b3': B3_7_SINGLE}
    assert multi == {'X-B3-TraceId': T32, 'X-B3-SpanId': S, 'X-B3-ParentSpanId': P,
                     'X-B3-Sampled': '1'}


# --- round trips and injection ------------------------------------------------------

ROUND_TRIP = [
    pytest.param(SpanContext(T32, S, P, True), id='128bit-parent-accept'),
    pytest.param(SpanContext(T16, S, None, True), id='64bit-root-accept-B3-I8'),
    pytest.param(SpanContext(T16, S, P, False), id='deny-B3-S2'),
    pytest.param(SpanContext(T32, S, P, True, True), id='debug-B3-S4'),
    pytest.param(SpanContext(T32, S, None, None), id='defer-root-B3-S1'),
    pytest.param(SpanContext(None, None, None, False), id='sampling-only-deny-B3-S8'),
    pytest.param(SpanContext(None, None, None, True), id='sampling-only-accept-B3-S8'),
    pytest.param(SpanContext(None, None, None, True, True), id='sampling-only-debug-B3-S8'),
]


@pytest.mark.parametrize('context', ROUND_TRIP)
@pytest.mark.parametrize('propagator', BOTH)
def test_round_trip(propagator, context):
    carrier = {}
    propagator.inject(context, carrier)
    assert propagator.extract(lowered(carrier)) == context


def test_multi_round_trip_keeps_parent_of_a_deferred_context():
    context = SpanContext(T32, S, P, None)
    carrier = {}
    MULTI.inject(context, carrier)
    assert carrier == {'X-B3-TraceId': T32, 'X-B3-SpanId': S, 'X-B3-ParentSpanId': P}
    assert MULTI.extract(lowered(carrier)) == context


def test_single_drops_the_parent_of_a_deferred_context_B3_1():
    # The b3 grammar has no T-S-P shape to write; the parent is not needed downstream.
    carrier = {}
    SINGLE.inject(SpanContext(T32, S, P, None), carrier)
    assert carrier == {'b3': f'{T32}-{S}'}


@pytest.mark.parametrize('context, expected', [
    pytest.param(SpanContext(T16, S, None, True, True),
                 {'X-B3-TraceId': T16, 'X-B3-SpanId': S, 'X-B3-Flags': '1'},
                 id='debug-no-sampled-header-B3-S4'),
    pytest.param(SpanContext(T16, S, None, None), {'X-B3-TraceId': T16, 'X-B3-SpanId': S},
                 id='defer-writes-no-state-B3-E1'),
    pytest.param(SpanContext(T16, S, None, False),
                 {'X-B3-TraceId': T16, 'X-B3-SpanId': S, 'X-B3-Sampled': '0'},
                 id='deny-B3-E1'),
    pytest.param(SpanContext(None, None, None, False), {'X-B3-Sampled': '0'},
                 id='sampling-only-B3-S8'),
    pytest.param(SpanContext(None, None, None, None), {}, id='nothing-to-say'),
])
def test_multi_inject(context, expected):
    carrier = {}
    MULTI.inject(context, carrier)
    assert carrier == expected


@pytest.mark.parametrize('context, expected', [
    pytest.param(SpanContext(T16, S, P, True, True), f'{T16}-{S}-d-{P}', id='debug-d-B3-E2'),
    pytest.param(SpanContext(T16, S, None, False), f'{T16}-{S}-0', id='deny'),
    pytest.param(SpanContext(T16, S, None, None), f'{T16}-{S}', id='defer'),
    pytest.param(SpanContext(None, None, None, False), '0', id='reporter-upload-B3-E6'),
    pytest.param(SpanContext(None, None, None, True, True), 'd', id='sampling-only-debug'),
])
def test_single_inject(context, expected):
    carrier = {}
    SINGLE.inject(context, carrier)
    assert carrier == {'b3': expected}


def test_single_inject_writes_nothing_without_ids_or_decision():
    carrier = {}
    SINGLE.inject(SpanContext(None, None), carrier)
    assert carrier == {}


@pytest.mark.parametrize('propagator', BOTH)
@pytest.mark.parametrize('trace_id', [T16, T32])
def test_trace_id_width_is_preserved_B3_I8(propagator, trace_id):
    context = propagator.extract({'x-b3-traceid': trace_id, 'x-b3-spanid': S})
    assert context.trace_id == trace_id
    out = {}
    propagator.inject(context, out)
    sent = out['X-B3-TraceId'] if propagator is MULTI else out['b3'].split('-')[0]
    assert sent == trace_id


# --- extraction details -------------------------------------------------------------

@pytest.mark.parametrize('headers, expected', [
    pytest.param({'b3': '0'}, SpanContext(None, None, None, False), id='b3-0-B3-S8'),
    pytest.param({'b3': '1'}, SpanContext(None, None, None, True), id='b3-1-B3-S8'),
    pytest.param({'b3': 'd'}, SpanContext(None, None, None, True, True), id='b3-d-B3-S8'),
    pytest.param({'x-b3-sampled': '0'}, SpanContext(None, None, None, False),
                 id='sampled-0-alone-B3-V3'),
    pytest.param({'x-b3-flags': '1'}, SpanContext(None, None, None, True, True),
                 id='flags-1-alone-B3-V3'),
    pytest.param({'x-b3-sampled': '1', 'x-b3-spanid': S}, SpanContext(None, None, None, True),
                 id='span-without-trace-is-ignored-B3-V3'),
])
@pytest.mark.parametrize('propagator', BOTH)
def test_sampling_only_contexts(propagator, headers, expected):
    context = propagator.extract(headers)
    assert context == expected
    assert not context.has_ids


@pytest.mark.parametrize('value, sampled', [
    pytest.param('1', True, id='1'),
    pytest.param('0', False, id='0'),
    pytest.param('true', True, id='legacy-true-B3-S6'),
    pytest.param('false', False, id='legacy-false-B3-S6'),
    pytest.param('True', True, id='legacy-True-B3-S6'),
    pytest.param('FALSE', False, id='legacy-FALSE-B3-S6'),
    pytest.param(' 1', True, id='ows'),
    pytest.param('1,0', True, id='repeated-first-wins-B3-H5'),
])
def test_sampled_values(value, sampled):
    context = MULTI.extract({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-sampled': value})
    assert context.sampled is sampled


@pytest.mark.parametrize('headers, sampled, debug', [
    pytest.param({'x-b3-flags': '1', 'x-b3-sampled': '0'}, True, True,
                 id='debug-implies-accept-B3-S4'),
    pytest.param({'x-b3-flags': '0'}, None, False, id='flags-0-ignored-B3-S5'),
    pytest.param({'x-b3-flags': '2', 'x-b3-sampled': '0'}, False, False,
                 id='flags-2-ignored-B3-S5'),
    pytest.param({'x-b3-flags': 'garbage'}, None, False, id='flags-garbage-ignored-B3-S5'),
    pytest.param({}, None, False, id='defer-B3-S9'),
])
def test_flags(headers, sampled, debug):
    context = MULTI.extract({'x-b3-traceid': T16, 'x-b3-spanid': S, **headers})
    assert (context.trace_id, context.sampled, context.debug) == (T16, sampled, debug)


@pytest.mark.parametrize('propagator', BOTH)
def test_single_header_takes_precedence_B3_5(propagator):
    headers = {'b3': f'{T32}-{S}-0', 'x-b3-traceid': T16, 'x-b3-spanid': P,
               'x-b3-sampled': '1'}
    assert propagator.extract(headers) == SpanContext(T32, S, None, False)


@pytest.mark.parametrize('propagator', BOTH)
def test_invalid_single_header_falls_back_to_multi_B3_6(propagator):
    headers = {'b3': 'garbage', 'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-sampled': '1'}
    assert propagator.extract(headers) == SpanContext(T16, S, None, True)


@pytest.mark.parametrize('headers, expected', [
    pytest.param({'b3': f'{T16}-{S},{T32}-{P}'}, SpanContext(T16, S), id='b3-B3-H5'),
    pytest.param({'x-b3-traceid': f'{T16},{T32}', 'x-b3-spanid': f'{S},{P}'},
                 SpanContext(T16, S), id='multi-B3-H5'),
    pytest.param({'b3': f'  {T16}-{S}-1 '}, SpanContext(T16, S, None, True), id='ows'),
    pytest.param({'b3': f'{T16}-{S}-{P}'}, SpanContext(T16, S, P), id='T-S-P-B3-3'),
    pytest.param({'b3': f'{T16.upper()}-{S.upper()}-1-{P.upper()}'},
                 SpanContext(T16, S, P, True), id='upper-case-normalised-B3-I7'),
    pytest.param({'x-b3-traceid': T32.upper(), 'x-b3-spanid': S.upper(),
                  'x-b3-parentspanid': P.upper()},
                 SpanContext(T32, S, P), id='multi-upper-case-normalised-B3-I7'),
])
@pytest.mark.parametrize('propagator', BOTH)
def test_extract_lenient_forms(propagator, headers, expected):
    assert propagator.extract(headers) == expected


def test_extracted_ids_are_the_wire_strings():
    context = MULTI.extract({'x-b3-traceid': T32, 'x-b3-spanid': S})
    assert (context.trace_id, context.span_id, context.parent_id) == (T32, S, None)


ZERO16, ZERO32 = '0' * 16, '0' * 32

MALFORMED_SINGLE = [
    pytest.param('', id='empty-B3-V1'),
    pytest.param('2', id='bad-state-B3-2'),
    pytest.param('D', id='upper-d-B3-2'),
    pytest.param('01', id='two-char-state'),
    pytest.param(T16, id='trace-only'),
    pytest.param(f'{T16}-', id='truncated-B3-4'),
    pytest.param(f'{T16}-{S}-', id='empty-state-B3-4'),
    pytest.param(f'{T16}-{S}-x', id='state-x-B3-2'),
    pytest.param(f'{T16}-{S}-true', id='state-true-B3-2'),
    pytest.param(f'{T16}-{S}-1-{P}-extra', id='after-parent-B3-4'),
    pytest.param(f'{T16}-{S}-1-{P[:15]}', id='short-parent-B3-4'),
    pytest.param(f'{T16}-{S}-1-{P}0', id='long-parent-B3-4'),
    pytest.param(f'{T32}0-{S}', id='33-char-trace-B3-4'),
    pytest.param(f'{T16[:15]}-{S}', id='15-char-trace-B3-I1'),
    pytest.param(f'{T16}0-{S}', id='17-char-trace-B3-I1'),
    pytest.param(f'{T16}-{S}0', id='17-char-span-B3-4'),
    pytest.param(f'{T16}_{S}', id='wrong-separator-B3-4'),
    pytest.param(f'{T16}:{S}:1', id='colon-separator-B3-4'),
    pytest.param(f'{ZERO16}-{S}', id='zero-trace-B3-I6'),
    pytest.param(f'{ZERO32}-{S}', id='zero-trace-128-B3-I6'),
    pytest.param(f'{T16}-{ZERO16}', id='zero-span-B3-I6'),
    pytest.param(f'{T16}-{S}-1-{ZERO16}', id='zero-parent-B3-I6'),
    pytest.param(f'{T16[:-1]}g-{S}', id='non-hex'),
    pytest.param(f'{T16[:-1]}\u0663-{S}', id='non-ascii-digit'),
    pytest.param(f'{T16}-{S}\r\n', id='crlf'),
    pytest.param(f'{T16}-{S}-1-{P}' + 'f' * 100, id='over-long-B3-4'),
]


@pytest.mark.parametrize('value', MALFORMED_SINGLE)
def test_malformed_single_header_gives_none(value):
    assert SINGLE.extract({'b3': value}) is None
    assert MULTI.extract({'b3': value}) is None


MALFORMED_MULTI = [
    pytest.param({'x-b3-traceid': T16}, id='span-missing-B3-V4'),
    pytest.param({'x-b3-traceid': '', 'x-b3-spanid': S}, id='empty-trace-B3-V1'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': ''}, id='empty-span-B3-V1'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-parentspanid': ''},
                 id='empty-parent-B3-I3'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-parentspanid': '-'},
                 id='dash-parent-B3-I3'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-parentspanid': ZERO16},
                 id='zero-parent-B3-I6'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-sampled': 'yes'},
                 id='bad-sampled-B3-S10'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-sampled': ''},
                 id='empty-sampled-B3-S10'),
    pytest.param({'x-b3-sampled': '2'}, id='bad-sampled-alone-B3-S10'),
    pytest.param({'x-b3-traceid': T16[:15], 'x-b3-spanid': S}, id='15-char-trace-B3-I1'),
    pytest.param({'x-b3-traceid': T16 + '0', 'x-b3-spanid': S}, id='17-char-trace-B3-I1'),
    pytest.param({'x-b3-traceid': T32 + '0', 'x-b3-spanid': S}, id='33-char-trace-B3-I1'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': T32}, id='32-char-span-B3-I2'),
    pytest.param({'x-b3-traceid': ZERO16, 'x-b3-spanid': S}, id='zero-trace-B3-I6'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': ZERO16}, id='zero-span-B3-I6'),
    pytest.param({'x-b3-traceid': '0x' + T16[2:], 'x-b3-spanid': S}, id='0x-prefix'),
    pytest.param({'x-b3-traceid': T16[:8] + '_' + T16[9:], 'x-b3-spanid': S},
                 id='underscore'),
    pytest.param({'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-sampled': '1' * 10_000},
                 id='over-long-sampled'),
    pytest.param({}, id='absent'),
]


@pytest.mark.parametrize('headers', MALFORMED_MULTI)
@pytest.mark.parametrize('propagator', BOTH)
def test_malformed_multi_headers_give_none(propagator, headers):
    assert propagator.extract(headers) is None


@pytest.mark.parametrize('propagator', BOTH)
def test_non_string_values_do_not_raise(propagator):
    assert propagator.extract({'b3': b'0', 'x-b3-traceid': 12}) is None


# --- properties and bounds ----------------------------------------------------------

B3_HEADERS = ('b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled',
              'x-b3-flags')
_near_valid = st.sampled_from([T16, T32, S, P, '0', '1', 'd', 'true', f'{T32}-{S}-1-{P}'])
_values = st.one_of(st.text(), _near_valid, st.builds(lambda a, b: a + b, _near_valid,
                                                       st.text(max_size=5)))


@PROPERTY_SETTINGS
@given(headers=st.dictionaries(st.sampled_from(B3_HEADERS), _values))
def test_any_header_text_gives_none_or_a_valid_context(headers):
    for propagator in (MULTI, SINGLE):
        context = propagator.extract(headers)
        assert_valid_context(context)
        if context is not None:
            # Whatever was extracted can be sent on and reads back the same (b3 cannot
            # carry the parent of a deferred context, see test_single_drops_the_parent).
            carrier = {}
            propagator.inject(context, carrier)
            again = propagator.extract(lowered(carrier))
            if propagator is SINGLE and context.sampled is None:
                context = SpanContext(context.trace_id, context.span_id)
            assert again == context


@pytest.mark.parametrize('make_carrier', [
    pytest.param(lambda: {'b3': 'a' * HUGE_SIZE}, id='b3'),
    pytest.param(lambda: {'b3': f'{T16}-{S}' + ' ' * HUGE_SIZE}, id='b3-trailing-spaces'),
    pytest.param(lambda: {'b3': ',' * HUGE_SIZE}, id='b3-commas'),
    pytest.param(lambda: {'x-b3-traceid': 'f' * HUGE_SIZE, 'x-b3-spanid': S}, id='traceid'),
    pytest.param(lambda: {'x-b3-traceid': T16, 'x-b3-spanid': S,
                          'x-b3-sampled': '1' * HUGE_SIZE}, id='sampled'),
    pytest.param(lambda: {'x-b3-traceid': T16, 'x-b3-spanid': S,
                          'x-b3-flags': ' ' * HUGE_SIZE}, id='flags'),
    pytest.param(lambda: {'x-b3-traceid': T16, 'x-b3-spanid': S,
                          'x-b3-parentspanid': '0' * HUGE_SIZE}, id='parent'),
])
def test_huge_values_are_rejected_with_bounded_work(make_carrier):
    context = assert_bounded(MULTI.extract, make_carrier)
    assert context is None or context.trace_id == T16
