"""Jaeger propagation: ``uber-trace-id``, ``uberctx-*`` and ``jaeger-debug-id`` (rule ids: Jaeger
checklist)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_tracing_wsgi.propagation import JaegerPropagator
from falcon_tracing_wsgi.propagation.baggage import MAX_MEMBERS
from falcon_tracing_wsgi.propagation.jaeger import DEBUG_ID_KEY
from falcon_tracing_wsgi.tracer.context import SpanContext

from ._checks import HUGE_SIZE, PROPERTY_SETTINGS, assert_bounded, assert_valid_context

JAEGER = JaegerPropagator()
TRACE = 'a3ce929d0e0e4736'
SPAN = '00f067aa0ba902b7'


def extract(value, **extra):
    return JAEGER.extract({'uber-trace-id': value, **extra})


# --- section 5 worked examples --------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    pytest.param(f'{TRACE}:{SPAN}:0:1', SpanContext(TRACE, SPAN, None, True),
                 id='example-1'),
    pytest.param(f'{TRACE}%3A{SPAN}%3A0%3A1', SpanContext(TRACE, SPAN, None, True),
                 id='example-url-encoded-J-X2'),
    pytest.param('1:2:0:1', SpanContext('0000000000000001', '0000000000000002', None, True),
                 id='example-unpadded-J-T1-J-Z1'),
    pytest.param('A3CE:2:0:3', SpanContext('000000000000a3ce', '0000000000000002', None,
                                           True, True), id='example-upper-case-debug-J-X1'),
])
def test_worked_examples(value, expected):
    assert extract(value) == expected


@pytest.mark.parametrize('value', [
    pytest.param('0:2:0:1', id='example-zero-trace-J-T2'),
    pytest.param('x:y:z:w', id='example-non-hex-J-V1'),
    pytest.param('1:2:3', id='example-three-fields-J-V1'),
])
def test_worked_example_errors(value):
    assert extract(value) is None


def test_worked_baggage_example():
    context = JAEGER.extract({'uberctx-key-one': 'hello%20world'})
    assert context == SpanContext(None, None, baggage={'key-one': 'hello world'})


# --- ids, widths, flags ---------------------------------------------------------------

@pytest.mark.parametrize('value, trace_id, span_id, parent_id', [
    pytest.param('abc:1:0:1', '0000000000000abc', '0000000000000001', None,
                 id='jaeger-client-python-unpadded-J-E2'),
    pytest.param('1' + '0' * 16 + ':2:3:1', '000000000000000' + '1' + '0' * 16,
                 '0000000000000002', '0000000000000003', id='17-digits-padded-to-32-J-Z1'),
    pytest.param('f' * 32 + ':' + 'e' * 16 + ':' + 'd' * 16 + ':01', 'f' * 32, 'e' * 16,
                 'd' * 16, id='full-width'),
    pytest.param('0000000000000000' + TRACE + f':{SPAN}:0:1', '0000000000000000' + TRACE,
                 SPAN, None, id='128-bit-with-zero-high-half-keeps-width'),
    pytest.param(f'{TRACE}:{SPAN}:0000000000000000:1', TRACE, SPAN, None,
                 id='padded-zero-parent-is-root-J-P1'),
    pytest.param(f' {TRACE}:{SPAN}:0:1\t', TRACE, SPAN, None, id='ows'),
    pytest.param(f'{TRACE}%3a{SPAN}%3a0%3a1', TRACE, SPAN, None, id='lower-case-escape'),
])
def test_ids_are_repadded_to_exact_width(value, trace_id, span_id, parent_id):
    context = extract(value)
    assert (context.trace_id, context.span_id, context.parent_id) == (trace_id, span_id,
                                                                      parent_id)


@pytest.mark.parametrize('flags, sampled, debug', [
    pytest.param('0', False, False, id='0-not-sampled-J-F2'),
    pytest.param('00', False, False, id='00'),
    pytest.param('1', True, False, id='1-sampled-J-F1'),
    pytest.param('01', True, False, id='01'),
    pytest.param('2', False, False, id='debug-without-sampled-is-not-debug-J-F3'),
    pytest.param('3', True, True, id='3-debug-J-F3'),
    pytest.param('09', True, False, id='firehose-bit-ignored-J-F4'),
    pytest.param('fb', True, True, id='unknown-bits-ignored-J-F4'),
])
def test_flags(flags, sampled, debug):
    context = extract(f'{TRACE}:{SPAN}:0:{flags}')
    assert (context.sampled, context.debug) == (sampled, debug)


@pytest.mark.parametrize('value', [
    pytest.param('', id='empty'),
    pytest.param(f'{TRACE}:{SPAN}:0', id='three-fields-J-H2'),
    pytest.param(f'{TRACE}:{SPAN}:0:1:1', id='five-fields-J-H2'),
    pytest.param(f'{TRACE}:0:0:1', id='zero-span-J-S1'),
    pytest.param(f'{"0" * 16}:{SPAN}:0:1', id='padded-zero-trace-J-T2'),
    pytest.param(f'-1:{SPAN}:0:1', id='negative-J-V1'),
    pytest.param(f'0x1:{SPAN}:0:1', id='0x-prefix'),
    pytest.param(f'1_0:{SPAN}:0:1', id='underscore'),
    pytest.param(f'{"1" * 33}:{SPAN}:0:1', id='33-digit-trace-J-T1'),
    pytest.param(f'{TRACE}:{"1" * 17}:0:1', id='17-digit-span-J-S1'),
    pytest.param(f'{TRACE}:{SPAN}:{"1" * 17}:1', id='17-digit-parent-J-P1'),
    pytest.param(f'{TRACE}:{SPAN}:0:001', id='3-digit-flags-J-F1'),
    pytest.param(f'{TRACE}:{SPAN}::1', id='empty-parent'),
    pytest.param(f'{TRACE}:{SPAN}:0:1,{TRACE}:{SPAN}:0:1', id='comma-joined-J-V3'),
    pytest.param(f'{TRACE}:{SPAN}:0:1\r\n', id='crlf'),
    pytest.param(f'{TRACE}%3A{SPAN}%3A0%3A1%0A', id='encoded-newline'),
    pytest.param(f'{TRACE}:{SPAN}:0:1' + ' ' * 100, id='over-long'),
])
def test_malformed_trace_header_gives_no_context(value):
    assert extract(value) is None


# --- baggage --------------------------------------------------------------------------

@pytest.mark.parametrize('headers, expected', [
    pytest.param({'uberctx-key-one': 'hello%20world', 'uberctx-k2': 'a%20b%2Cc%3Dd/%C3%A9'},
                 {'key-one': 'hello world', 'k2': 'a b,c=d/\u00e9'}, id='url-decoded-J-B2'),
    pytest.param({'UberCtx-Key-One': 'v'}, {'key-one': 'v'}, id='keys-lower-cased-J-B3'),
    pytest.param({'uberctx-my_key': 'v'}, {'my-key': 'v'}, id='underscore-as-dash-J-B4'),
    pytest.param({'uberctx-my-key': '1', 'uberctx-my_key': '2'}, {'my-key': '1'},
                 id='same-key-first-wins'),
    pytest.param({'uberctx-': 'v', 'uberctx-k': ''}, {'k': ''}, id='empty-key-skipped'),
    pytest.param({'x-uberctx-k': 'v', 'uber-ctx-k': 'v', 'uberctx-k': 'v'}, {'k': 'v'},
                 id='prefix-must-match'),
    pytest.param({'uberctx-k': '%FF'}, {'k': '\ufffd'}, id='invalid-utf-8-replaced'),
])
def test_baggage_extract(headers, expected):
    context = JAEGER.extract({'uber-trace-id': f'{TRACE}:{SPAN}:0:1', **headers})
    assert context.trace_id == TRACE
    assert context.baggage == expected


def test_baggage_survives_an_invalid_trace_header_J_V2():
    context = extract('garbage', **{'uberctx-k': 'v'})
    assert context == SpanContext(None, None, baggage={'k': 'v'})


def test_baggage_limits_J_B7():
    headers = {f'uberctx-k{i:03}': 'v' for i in range(MAX_MEMBERS + 10)}
    assert len(JAEGER.extract(headers).baggage) == MAX_MEMBERS
    assert JAEGER.extract({'uberctx-big': 'v' * 5000, 'uberctx-k': 'v'}).baggage == {'k': 'v'}
    headers = {f'uberctx-k{i}': 'v' * 3000 for i in range(5)}
    assert len(JAEGER.extract(headers).baggage) == 2


def test_non_string_names_keep_the_trace_context():
    class Carrier(dict):
        def __iter__(self):
            return iter([1, 'uber-trace-id'])
    context = JAEGER.extract(Carrier({'uber-trace-id': f'{TRACE}:{SPAN}:0:1'}))
    assert context == SpanContext(TRACE, SPAN, None, True)


def test_non_string_values_do_not_raise():
    assert JAEGER.extract({'uber-trace-id': 5, 'uberctx-k': 6}) is None


# --- jaeger-debug-id --------------------------------------------------------------------

def test_debug_id_without_trace_header_forces_a_debug_trace_J_B6():
    context = JAEGER.extract({'jaeger-debug-id': 'my-debug-id', 'uberctx-k': 'v'})
    assert context == SpanContext(None, None, None, True, True, {'k': 'v'}, None,
                                  {DEBUG_ID_KEY: 'my-debug-id'})


def test_debug_id_is_ignored_next_to_a_valid_trace_header():
    context = extract(f'{TRACE}:{SPAN}:0:0', **{'jaeger-debug-id': 'x'})
    assert context == SpanContext(TRACE, SPAN, None, False)


@pytest.mark.parametrize('value', ['', ' ', 'a b', 'x' * 257, 'caf\u00e9', 'a\r\nb'])
def test_invalid_debug_id_is_ignored(value):
    assert JAEGER.extract({'jaeger-debug-id': value}) is None


# --- inject -----------------------------------------------------------------------------

@pytest.mark.parametrize('context, expected', [
    pytest.param(SpanContext(TRACE, SPAN, None, True), f'{TRACE}:{SPAN}:0:01',
                 id='root-parent-0-flags-01-J-E1'),
    pytest.param(SpanContext(TRACE, SPAN, 'cccccccccccccccc', False),
                 f'{TRACE}:{SPAN}:cccccccccccccccc:00', id='parent-and-not-sampled'),
    pytest.param(SpanContext(TRACE, SPAN, None, True, True), f'{TRACE}:{SPAN}:0:03',
                 id='debug-03-J-F3'),
    pytest.param(SpanContext(TRACE, SPAN, None, None), f'{TRACE}:{SPAN}:0:00',
                 id='defer-00'),
    pytest.param(SpanContext('f' * 32, SPAN, None, True), f'{"f" * 32}:{SPAN}:0:01',
                 id='128-bit'),
])
def test_inject_trace_header(context, expected):
    carrier = {}
    JAEGER.inject(context, carrier)
    assert carrier == {'uber-trace-id': expected}


def test_sampled_is_not_debug_on_inject_J_E4():
    carrier = {}
    JAEGER.inject(SpanContext(TRACE, SPAN, None, True), carrier)
    assert carrier['uber-trace-id'].endswith(':01')


def test_inject_baggage_J_E3():
    context = SpanContext(None, None, baggage={'key-one': 'a b,c=d/\u00e9', 'plain': 'v/1',
                                               'bad key': 'x', 'k\r\n': 'y',
                                               'surrogate': 'a\ud800'})
    carrier = {}
    JAEGER.inject(context, carrier)
    assert carrier == {'uberctx-key-one': 'a%20b%2Cc%3Dd/%C3%A9', 'uberctx-plain': 'v/1',
                       'uberctx-surrogate': 'a%3F'}


@pytest.mark.parametrize('context', [
    pytest.param(SpanContext(TRACE, SPAN, None, True, baggage={'k': 'v 1'}), id='baggage'),
    pytest.param(SpanContext('0' * 16 + TRACE, SPAN, 'aaaaaaaaaaaaaaaa', False),
                 id='128-bit-parent'),
    pytest.param(SpanContext(TRACE, SPAN, None, True, True), id='debug'),
])
def test_round_trip(context):
    carrier = {}
    JAEGER.inject(context, carrier)
    assert JAEGER.extract(carrier) == context


# --- properties and bounds ------------------------------------------------------------

_near_valid = st.sampled_from([f'{TRACE}:{SPAN}:0:1', '1:2:0:1', 'A3CE:2:0:3',
                               f'{TRACE}%3A{SPAN}%3A0%3A1'])
_values = st.one_of(st.text(), _near_valid,
                    st.builds(lambda a, b: a + b, _near_valid, st.text(max_size=5)))
_names = st.one_of(st.sampled_from(['uber-trace-id', 'jaeger-debug-id']),
                   st.text(max_size=12).map(lambda s: 'uberctx-' + s), st.text(max_size=12))


@PROPERTY_SETTINGS
@given(headers=st.dictionaries(_names, _values, max_size=6))
def test_any_header_text_gives_none_or_a_valid_context(headers):
    context = JAEGER.extract(headers)
    assert_valid_context(context)
    if context is not None and context.has_ids:
        carrier = {}
        JAEGER.inject(context, carrier)
        again = JAEGER.extract(carrier)
        assert (again.trace_id, again.span_id, again.parent_id, again.sampled,
                again.debug) == (context.trace_id, context.span_id, context.parent_id,
                                 context.sampled, context.debug)


@pytest.mark.parametrize('make_carrier', [
    pytest.param(lambda: {'uber-trace-id': '1' * HUGE_SIZE}, id='trace-header'),
    pytest.param(lambda: {'uber-trace-id': ' ' * HUGE_SIZE}, id='trace-header-spaces'),
    pytest.param(lambda: {'uber-trace-id': '%3A' * (HUGE_SIZE // 3)}, id='trace-escapes'),
    pytest.param(lambda: {'uberctx-k': '%20' * (HUGE_SIZE // 3)}, id='baggage-value'),
    pytest.param(lambda: {'jaeger-debug-id': ' ' * HUGE_SIZE}, id='debug-id'),
])
def test_huge_values_are_bounded(make_carrier):
    context = assert_bounded(JAEGER.extract, make_carrier)
    assert context is None
