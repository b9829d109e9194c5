"""W3C Trace Context (Level 2): traceparent and tracestate.

The malformed-input tables follow the W3C test suite (``test/test.py`` of
w3c/trace-context): each case there that expects "a newly generated trace_id" is a case
where extraction must give no context.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_tracing_wsgi.propagation import TraceContextPropagator
from falcon_tracing_wsgi.propagation.w3c import MAX_TRACESTATE_LENGTH
from falcon_tracing_wsgi.tracer.context import SpanContext

from ._checks import HUGE_SIZE, PROPERTY_SETTINGS, assert_bounded, assert_valid_context

W3C = TraceContextPropagator()
TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
PARENT = '00f067aa0ba902b7'
SPEC_SAMPLED = f'00-{TRACE}-{PARENT}-01'
SPEC_NOT_SAMPLED = f'00-{TRACE}-{PARENT}-00'
SUITE_TRACE = '12345678901234567890123456789012'
SUITE_PARENT = '1234567890123456'
SUITE = f'00-{SUITE_TRACE}-{SUITE_PARENT}-00'


def extract(traceparent, tracestate=None):
    carrier = {'traceparent': traceparent}
    if tracestate is not None:
        carrier['tracestate'] = tracestate
    return W3C.extract(carrier)


# --- traceparent ----------------------------------------------------------------------

@pytest.mark.parametrize('value, sampled, random', [
    pytest.param(SPEC_SAMPLED, True, False, id='spec-example-sampled'),
    pytest.param(SPEC_NOT_SAMPLED, False, False, id='spec-example-not-sampled'),
    pytest.param(f'00-{TRACE}-{PARENT}-02', False, True, id='random-not-sampled'),
    pytest.param(f'00-{TRACE}-{PARENT}-03', True, True, id='random-sampled'),
    pytest.param(f'00-{TRACE}-{PARENT}-09', True, False, id='flags-are-a-bit-field'),
    pytest.param(f'00-{TRACE}-{PARENT}-fe', False, True, id='reserved-flags-ignored'),
    pytest.param(f'00-{TRACE}-{PARENT}-fd', True, False, id='reserved-flags-ignored-2'),
])
def test_spec_examples(value, sampled, random):
    assert extract(value) == SpanContext(TRACE, PARENT, None, sampled,
                                         random_trace_id=random)


@pytest.mark.parametrize('value', [
    pytest.param(f'cc-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-cc'),
    pytest.param(f'cc-{SUITE_TRACE}-{SUITE_PARENT}-01-what-the-future-will-be-like',
                 id='version-cc-extra-fields'),
    pytest.param(f'01-{SUITE_TRACE}-{SUITE_PARENT}-01-', id='version-01-empty-extra-field'),
    pytest.param(f' 00-{SUITE_TRACE}-{SUITE_PARENT}-01', id='leading-space'),
    pytest.param(f'\t00-{SUITE_TRACE}-{SUITE_PARENT}-01', id='leading-tab'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-01 ', id='trailing-space'),
    pytest.param(f'\t 00-{SUITE_TRACE}-{SUITE_PARENT}-01 \t', id='both'),
])
def test_valid_traceparent_variants(value):
    assert extract(value) == SpanContext(SUITE_TRACE, SUITE_PARENT, None, True)


MALFORMED_TRACEPARENT = [
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-01.', id='version-00-trailing-char'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-01-what-the-future-will-be-like',
                 id='version-00-extra-field'),
    pytest.param(f'cc-{SUITE_TRACE}-{SUITE_PARENT}-01.what-the-future-will-be-like',
                 id='version-cc-bad-delimiter'),
    pytest.param(f'ff-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-ff-forbidden'),
    pytest.param(f'.0-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-illegal-1'),
    pytest.param(f'0.-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-illegal-2'),
    pytest.param(f'000-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-too-long-3'),
    pytest.param(f'0000-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-too-long-4'),
    pytest.param(f'0-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-too-short'),
    pytest.param(f'CC-{SUITE_TRACE}-{SUITE_PARENT}-01', id='version-upper-case'),
    pytest.param(f'00-{"0" * 32}-{SUITE_PARENT}-01', id='trace-id-all-zero'),
    pytest.param(f'00-.{SUITE_TRACE[1:]}-{SUITE_PARENT}-01', id='trace-id-illegal-1'),
    pytest.param(f'00-{SUITE_TRACE[:-1]}.-{SUITE_PARENT}-01', id='trace-id-illegal-2'),
    pytest.param(f'00-{SUITE_TRACE}3-{SUITE_PARENT}-01', id='trace-id-too-long'),
    pytest.param(f'00-{SUITE_TRACE[:-1]}-{SUITE_PARENT}-01', id='trace-id-too-short'),
    pytest.param(f'00-{TRACE.upper()}-{PARENT}-01', id='trace-id-upper-case'),
    pytest.param(f'00-{SUITE_TRACE}-{"0" * 16}-01', id='parent-id-all-zero'),
    pytest.param(f'00-{SUITE_TRACE}-.{SUITE_PARENT[1:]}-01', id='parent-id-illegal-1'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT[:-1]}.-01', id='parent-id-illegal-2'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}7-01', id='parent-id-too-long'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT[:-1]}-01', id='parent-id-too-short'),
    pytest.param(f'00-{TRACE}-{PARENT.upper()}-01', id='parent-id-upper-case'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-.0', id='flags-illegal-1'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-0.', id='flags-illegal-2'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-001', id='flags-too-long'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-1', id='flags-too-short'),
    pytest.param(f'00-{SUITE_TRACE}-{SUITE_PARENT}-0A', id='flags-upper-case'),
    pytest.param(f'cc-{SUITE_TRACE}-{SUITE_PARENT}', id='higher-version-shorter-than-55'),
    pytest.param(f'00-{SUITE_TRACE}1-{SUITE_PARENT}-01,00-{SUITE_TRACE}2-{SUITE_PARENT}-01',
                 id='duplicated-header-joined-by-wsgi'),
    pytest.param(f'cc-{SUITE_TRACE}-{SUITE_PARENT}-01-x,cc-{SUITE_TRACE}-{SUITE_PARENT}-01',
                 id='duplicated-higher-version'),
    pytest.param(f'00_{SUITE_TRACE}_{SUITE_PARENT}_01', id='wrong-delimiter'),
    pytest.param('', id='empty'),
    pytest.param(f'cc-{SUITE_TRACE}-{SUITE_PARENT}-01-' + 'x' * 600, id='prohibitively-large'),
]


@pytest.mark.parametrize('value', MALFORMED_TRACEPARENT)
def test_malformed_traceparent_gives_no_context(value):
    assert extract(value, 'foo=1') is None


def test_absent_traceparent_gives_no_context_and_tracestate_is_discarded():
    assert W3C.extract({'tracestate': 'foo=1,bar=2'}) is None
    assert W3C.extract({}) is None


# --- tracestate -----------------------------------------------------------------------

ALL_KEY_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/'
ALL_VALUE_CHARS = (''.join(map(chr, range(0x20, 0x2C))) + ''.join(map(chr, range(0x2D, 0x3D)))
                   + ''.join(map(chr, range(0x3E, 0x7F))))


@pytest.mark.parametrize('tracestate, expected', [
    pytest.param('rojo=00f067aa0ba902b7', 'rojo=00f067aa0ba902b7', id='spec-single'),
    pytest.param('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
                 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', id='spec-multiple'),
    pytest.param('foo=1,bar=2,rojo=1,congo=2,baz=3', 'foo=1,bar=2,rojo=1,congo=2,baz=3',
                 id='multiple-headers-combined-in-order'),
    pytest.param('foo=1,', 'foo=1', id='empty-header-after'),
    pytest.param(',foo=1', 'foo=1', id='empty-header-before'),
    pytest.param('foo=1 \t , \t bar=2, \t baz=3', 'foo=1,bar=2,baz=3', id='ows-around-members'),
    pytest.param('foo=1\t \t,\t \tbar=2,\t \tbaz=3', 'foo=1,bar=2,baz=3', id='ows-tabs'),
    pytest.param(' foo=1', 'foo=1', id='leading-space'),
    pytest.param('\tfoo=1', 'foo=1', id='leading-tab'),
    pytest.param('foo=1 ', 'foo=1', id='trailing-space'),
    pytest.param('\t foo=1 \t', 'foo=1', id='both'),
    pytest.param('foo= 1', 'foo= 1', id='leading-space-of-value-is-kept'),
    pytest.param(f'{ALL_KEY_CHARS}={ALL_VALUE_CHARS}', f'{ALL_KEY_CHARS}={ALL_VALUE_CHARS}',
                 id='all-allowed-characters'),
    pytest.param(f'{ALL_KEY_CHARS}@a-z0-9_-*/={ALL_VALUE_CHARS}',
                 f'{ALL_KEY_CHARS}@a-z0-9_-*/={ALL_VALUE_CHARS}',
                 id='all-allowed-characters-multi-tenant'),
    pytest.param('fw529a3039@dt=x', 'fw529a3039@dt=x', id='tenant-may-start-with-digit'),
    pytest.param('foo=1,' + 'z' * 256 + '=1', 'foo=1,' + 'z' * 256 + '=1', id='key-256'),
    pytest.param('foo=1,' + 't' * 241 + '@' + 'v' * 14 + '=1',
                 'foo=1,' + 't' * 241 + '@' + 'v' * 14 + '=1', id='tenant-241-system-14'),
    pytest.param('foo=' + 'v' * 256, 'foo=' + 'v' * 256, id='value-256'),
    pytest.param(','.join(f'bar{i:02}={i:02}' for i in range(1, 33)),
                 ','.join(f'bar{i:02}={i:02}' for i in range(1, 33)), id='32-members'),
    # Level 2's key grammar: (lcalpha / DIGIT) 0*255 keychar, keychar including "@".
    pytest.param('1foo=1', '1foo=1', id='l2-key-starting-with-digit'),
    pytest.param('t@1v=1', 't@1v=1', id='l2-system-id-starting-with-digit'),
    pytest.param('foo@=1,bar=2', 'foo@=1,bar=2', id='l2-trailing-at'),
    pytest.param('foo@@bar=1,bar=2', 'foo@@bar=1,bar=2', id='l2-double-at'),
    pytest.param('foo@bar@baz=1,bar=2', 'foo@bar@baz=1,bar=2', id='l2-two-ats'),
    pytest.param('foo=1,' + 't' * 242 + '@v=1', 'foo=1,' + 't' * 242 + '@v=1',
                 id='l2-long-tenant'),
    pytest.param('foo=1,t@' + 'v' * 15 + '=1', 'foo=1,t@' + 'v' * 15 + '=1',
                 id='l2-long-system'),
    pytest.param('foo=1,' + '9' * 256 + '=1', 'foo=1,' + '9' * 256 + '=1',
                 id='l2-key-256-digits'),
    pytest.param('foo=1,' + 'a' + '@' * 255 + '=1', 'foo=1,' + 'a' + '@' * 255 + '=1',
                 id='l2-key-256-ats'),
    # Duplicated keys are inherited: the left-most (most recent) entry is kept.
    pytest.param('foo=1,foo=1', 'foo=1', id='duplicated-keys-same-value'),
    pytest.param('foo=1,foo=2', 'foo=1', id='duplicated-keys'),
    pytest.param('foo=1,bar=2,foo=3,baz=4,bar=5', 'foo=1,bar=2,baz=4',
                 id='duplicated-keys-order-kept'),
    pytest.param('foo=1, foo=9', 'foo=1', id='duplicate-across-combined-headers'),
    pytest.param(','.join(f'bar{i:02}={i:02}' for i in range(1, 33)) + ',bar01=x',
                 ','.join(f'bar{i:02}={i:02}' for i in range(1, 33)),
                 id='32-members-plus-a-duplicate'),
])
def test_valid_tracestate_is_kept_normalised(tracestate, expected):
    context = extract(SUITE, tracestate)
    assert context.trace_id == SUITE_TRACE
    assert context.tracestate == expected


@pytest.mark.parametrize('tracestate', [
    pytest.param('', id='empty-header'),
    pytest.param(' , ,\t', id='only-empty-members'),
    pytest.param('foo =1', id='space-in-key'),
    pytest.param('FOO=1', id='upper-case-key'),
    pytest.param('foo.bar=1', id='dot-in-key'),
    pytest.param('@foo=1,bar=2', id='key-starting-with-at'),
    pytest.param('_foo=1', id='key-starting-with-underscore'),
    pytest.param('*=1', id='key-starting-with-star'),
    pytest.param('foo=1,' + 'a' + '@' * 256 + '=1', id='key-257-ats'),
    pytest.param(','.join(f'bar{i:02}={i:02}' for i in range(1, 34)), id='33-members'),
    pytest.param('foo=1,' + 'z' * 257 + '=1', id='key-257'),
    pytest.param('foo=' + 'v' * 257, id='value-257'),
    pytest.param('foo=bar=baz', id='equals-in-value'),
    pytest.param('foo=,bar=3', id='empty-value'),
    pytest.param('foo', id='no-equals'),
    pytest.param('foo=\x7f', id='del-in-value'),
    pytest.param('foo=a\tb', id='tab-in-value'),
    pytest.param('foo=caf\u00e9', id='non-ascii-value'),
    pytest.param('foo=1\r\nx-evil: 1', id='crlf'),
    pytest.param('foo=1' + ',' * 200, id='too-many-empty-members'),
    pytest.param('foo=1,' + ' ' * 20_000, id='over-long-input'),
])
def test_invalid_tracestate_is_dropped_without_invalidating_traceparent(tracestate):
    context = extract(SUITE, tracestate)
    assert context == SpanContext(SUITE_TRACE, SUITE_PARENT, None, False)
    assert context.tracestate is None


def test_tracestate_is_truncated_to_the_limit_removing_long_entries_first():
    long_entry = 'big=' + 'x' * 200          # > 128 characters: removed first
    entries = [f'k{i:02}=' + 'v' * 40 for i in range(12)]  # 44 characters each
    value = ','.join(entries[:3] + [long_entry] + entries[3:])
    context = extract(SUITE, value)
    # Without the long entry: 12 * 44 + 11 = 539 > 512, so entries go from the end.
    assert context.tracestate == ','.join(entries[:11])
    assert len(context.tracestate) <= MAX_TRACESTATE_LENGTH


def test_tracestate_within_the_limit_is_not_truncated():
    value = ','.join(f'k{i:02}=' + 'v' * 120 for i in range(4))  # 4 * 124 + 3 = 499
    assert extract(SUITE, value).tracestate == value


# --- inject ---------------------------------------------------------------------------

@pytest.mark.parametrize('context, expected', [
    pytest.param(SpanContext(TRACE, PARENT, None, True), {'traceparent': SPEC_SAMPLED},
                 id='sampled'),
    pytest.param(SpanContext(TRACE, PARENT, 'aaaaaaaaaaaaaaaa', False),
                 {'traceparent': SPEC_NOT_SAMPLED}, id='not-sampled-parent-not-sent'),
    pytest.param(SpanContext(TRACE, PARENT, None, None), {'traceparent': SPEC_NOT_SAMPLED},
                 id='defer-becomes-00'),
    pytest.param(SpanContext(TRACE, PARENT, None, True, True), {'traceparent': SPEC_SAMPLED},
                 id='debug-is-sampled'),
    pytest.param(SpanContext('a3ce929d0e0e4736', PARENT, None, True),
                 {'traceparent': f'00-0000000000000000a3ce929d0e0e4736-{PARENT}-01'},
                 id='64-bit-trace-id-left-padded'),
    pytest.param(SpanContext(TRACE, PARENT, None, True, tracestate='congo=t61rcWkgMzE'),
                 {'traceparent': SPEC_SAMPLED, 'tracestate': 'congo=t61rcWkgMzE'},
                 id='tracestate-passed-on'),
    pytest.param(SpanContext(None, None, None, False), {}, id='no-ids-nothing-to-write'),
    pytest.param(SpanContext(TRACE, PARENT, None, True, random_trace_id=True),
                 {'traceparent': f'00-{TRACE}-{PARENT}-03'}, id='random-sampled'),
    pytest.param(SpanContext(TRACE, PARENT, None, False, random_trace_id=True),
                 {'traceparent': f'00-{TRACE}-{PARENT}-02'}, id='random-not-sampled'),
    pytest.param(SpanContext(TRACE, PARENT, None, None, random_trace_id=True),
                 {'traceparent': f'00-{TRACE}-{PARENT}-02'}, id='random-deferred'),
    pytest.param(SpanContext('a3ce929d0e0e4736', PARENT, None, True, random_trace_id=True),
                 {'traceparent': f'00-0000000000000000a3ce929d0e0e4736-{PARENT}-03'},
                 id='random-64-bit-keeps-the-flag'),
])
def test_inject(context, expected):
    carrier = {}
    W3C.inject(context, carrier)
    assert carrier == expected


@pytest.mark.parametrize('flags, written', [
    pytest.param('03', '03', id='known-flags-kept'),
    pytest.param('ff', '03', id='unknown-flags-zeroed'),
    pytest.param('fc', '00', id='only-unknown-flags'),
])
def test_higher_version_is_downgraded_to_00_on_inject(flags, written):
    context = extract(f'cc-{SUITE_TRACE}-{SUITE_PARENT}-{flags}-future')
    carrier = {}
    W3C.inject(context, carrier)
    assert carrier == {'traceparent': f'00-{SUITE_TRACE}-{SUITE_PARENT}-{written}'}


@pytest.mark.parametrize('context', [
    pytest.param(SpanContext(TRACE, PARENT, None, True), id='sampled'),
    pytest.param(SpanContext(TRACE, PARENT, None, False, tracestate='a=1,b@c=2'), id='state'),
    pytest.param(SpanContext(TRACE, PARENT, None, True, random_trace_id=True), id='random'),
])
def test_round_trip(context):
    carrier = {}
    W3C.inject(context, carrier)
    assert W3C.extract(carrier) == context


def test_non_string_values_do_not_raise():
    assert W3C.extract({'traceparent': 12}) is None
    context = W3C.extract({'traceparent': SUITE, 'tracestate': 12})
    assert context is None or context.trace_id == SUITE_TRACE


# --- properties and bounds ------------------------------------------------------------

_near_valid = st.sampled_from([SPEC_SAMPLED, SUITE, f'cc-{SUITE_TRACE}-{SUITE_PARENT}-01-',
                               'foo=1', 'a@b=c', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'])
_values = st.one_of(st.text(), _near_valid,
                    st.builds(lambda a, b: a + b, _near_valid, st.text(max_size=5)))


@PROPERTY_SETTINGS
@given(traceparent=_values, tracestate=st.one_of(st.none(), _values))
def test_any_header_text_gives_none_or_a_valid_context(traceparent, tracestate):
    context = extract(traceparent, tracestate)
    assert_valid_context(context)
    if context is not None:
        assert len(context.trace_id) == 32 and context.parent_id is None
        assert context.sampled in (True, False)
        carrier = {}
        W3C.inject(context, carrier)
        assert W3C.extract(carrier) == context


@pytest.mark.parametrize('make_carrier', [
    pytest.param(lambda: {'traceparent': SUITE + '-' + 'x' * HUGE_SIZE}, id='traceparent'),
    pytest.param(lambda: {'traceparent': ' ' * HUGE_SIZE}, id='traceparent-spaces'),
    pytest.param(lambda: {'traceparent': SUITE, 'tracestate': 'a=1,' * (HUGE_SIZE // 4)},
                 id='tracestate-members'),
    pytest.param(lambda: {'traceparent': SUITE, 'tracestate': ' ' * HUGE_SIZE},
                 id='tracestate-spaces'),
])
def test_huge_values_are_rejected_with_bounded_work(make_carrier):
    context = assert_bounded(W3C.extract, make_carrier)
    assert context is None or (context.trace_id == SUITE_TRACE and context.tracestate is None)
