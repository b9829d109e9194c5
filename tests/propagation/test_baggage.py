"""W3C Baggage: the ``baggage`` header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falcon_tracing_wsgi.propagation import W3CBaggagePropagator
from falcon_tracing_wsgi.propagation.baggage import MAX_BYTES, MAX_MEMBER_BYTES, MAX_MEMBERS
from falcon_tracing_wsgi.tracer.context import SpanContext

from ._checks import HUGE_SIZE, PROPERTY_SETTINGS, assert_bounded, assert_valid_context

BAGGAGE = W3CBaggagePropagator()


def extract(value):
    context = BAGGAGE.extract({'baggage': value})
    if context is not None:
        assert context.trace_id is None and context.span_id is None
        assert context.sampled is None and not context.debug
    return None if context is None else context.baggage


@pytest.mark.parametrize('value, expected', [
    pytest.param('key1=value1;property1;property2, key2 = value2, '
                 'key3=value3; propertyKey=propertyValue',
                 {'key1': 'value1', 'key2': 'value2', 'key3': 'value3'},
                 id='spec-example-properties-dropped'),
    pytest.param('userId=alice,serverNode=DF%2028,isProduction=false',
                 {'userId': 'alice', 'serverNode': 'DF 28', 'isProduction': 'false'},
                 id='spec-example-single-header'),
    pytest.param('userId =   alice,serverNode = DF%2028, isProduction = false',
                 {'userId': 'alice', 'serverNode': 'DF 28', 'isProduction': 'false'},
                 id='spec-example-spaces'),
    pytest.param('k=caf%C3%A9', {'k': 'caf\u00e9'}, id='utf-8-percent-decoded'),
    pytest.param('k=a+b', {'k': 'a+b'}, id='plus-is-a-plus'),
    pytest.param('k=%FF', {'k': '\ufffd'}, id='invalid-utf-8-replaced'),
    pytest.param('k=%zz', {'k': '%zz'}, id='malformed-escape-kept'),
    pytest.param('k=a=b', {'k': 'a=b'}, id='equals-in-value'),
    pytest.param('k=', {'k': ''}, id='empty-value'),
    pytest.param('k=1,k=2', {'k': '1'}, id='duplicate-first-wins'),
    pytest.param('k=1,,\t, j=2', {'k': '1', 'j': '2'}, id='empty-members'),
    pytest.param("!#$%&'*+-.^_`|~Az09=v", {"!#$%&'*+-.^_`|~Az09": 'v'}, id='token-key'),
    pytest.param('k=1;p', {'k': '1'}, id='property-without-value'),
])
def test_extract(value, expected):
    assert extract(value) == expected


@pytest.mark.parametrize('value', [
    pytest.param('k v=1', id='space-in-key'),
    pytest.param('=v', id='empty-key'),
    pytest.param('k', id='no-equals'),
    pytest.param('k=a b', id='space-in-value'),
    pytest.param('k="v"', id='dquote-in-value'),
    pytest.param('k=a\\b', id='backslash-in-value'),
    pytest.param('k=caf\u00e9', id='raw-non-ascii-value'),
    pytest.param('k=v;=x', id='property-without-key'),
    pytest.param('k=v;p q', id='bad-property'),
    pytest.param('k=\r\nx', id='crlf'),
    pytest.param('k=' + 'v' * MAX_MEMBER_BYTES, id='member-over-4096'),
])
def test_invalid_member_is_dropped_alone(value):
    assert extract(f'{value},ok=1') == {'ok': '1'}
    assert extract(value) is None


def test_nothing_valid_gives_no_context():
    assert extract('') is None
    assert BAGGAGE.extract({}) is None


def test_member_count_limit():
    value = ','.join(f'k{i}=v' for i in range(MAX_MEMBERS + 20))
    baggage = extract(value)
    assert list(baggage) == [f'k{i}' for i in range(MAX_MEMBERS)]


def test_members_after_the_180th_are_not_read_even_if_earlier_ones_repeat():
    value = ','.join(['k=v'] * MAX_MEMBERS + ['late=1'])
    assert extract(value) == {'k': 'v'}


def test_member_of_exactly_4096_bytes_is_kept():
    member = 'k=' + 'v' * (MAX_MEMBER_BYTES - 2)
    assert extract(member) == {'k': 'v' * (MAX_MEMBER_BYTES - 2)}


def test_total_limit_keeps_the_members_within_8192_bytes():
    first = 'a=' + 'x' * 4000
    second = 'b=' + 'y' * 4000
    third = 'c=' + 'z' * 4000      # ends beyond 8192 bytes
    assert extract(','.join([first, second, third])) == {'a': 'x' * 4000, 'b': 'y' * 4000}


def test_over_long_single_member_without_comma_gives_nothing():
    assert extract('k=' + 'v' * (MAX_BYTES + 10)) is None


# --- inject ---------------------------------------------------------------------------

@pytest.mark.parametrize('baggage, expected', [
    pytest.param({'userId': 'alice', 'serverNode': 'DF 28'},
                 'userId=alice,serverNode=DF%2028', id='spec-example'),
    pytest.param({'k': 'a,b;c d"e\\f%g+h'}, 'k=a%2Cb%3Bc%20d%22e%5Cf%25g%2Bh',
                 id='delimiters-percent-and-plus-escaped'),
    pytest.param({'k': 'caf\u00e9'}, 'k=caf%C3%A9', id='utf-8'),
    pytest.param({'k': "a=b/c:d@e!#$&'()*<>?[]^`{|}"}, "k=a=b/c:d@e!#$&'()*<>?[]^`{|}",
                 id='baggage-octets-kept'),
    pytest.param({'bad key': 'x', 'k\r\nx': 'y', 'ok': '1'}, 'ok=1',
                 id='invalid-keys-skipped'),
    pytest.param({'k': 'a\ud800 b'}, 'k=a?%20b', id='lone-surrogate-does-not-raise'),
])
def test_inject(baggage, expected):
    carrier = {}
    BAGGAGE.inject(SpanContext(None, None, baggage=baggage), carrier)
    assert carrier == {'baggage': expected}


def test_inject_without_baggage_writes_nothing():
    carrier = {}
    BAGGAGE.inject(SpanContext('a' * 16, 'b' * 16, None, True), carrier)
    assert carrier == {}


def test_inject_respects_the_limits():
    baggage = {f'k{i}': 'v' for i in range(MAX_MEMBERS + 5)}
    baggage['huge'] = 'x' * MAX_MEMBER_BYTES
    carrier = {}
    BAGGAGE.inject(SpanContext(None, None, baggage=baggage), carrier)
    members = carrier['baggage'].split(',')
    assert len(members) == MAX_MEMBERS and 'huge' not in carrier['baggage']
    big = {f'k{i}': 'v' * 3000 for i in range(5)}
    carrier = {}
    BAGGAGE.inject(SpanContext(None, None, baggage=big), carrier)
    assert len(carrier['baggage']) <= MAX_BYTES
    assert carrier['baggage'].count(',') == 1


@PROPERTY_SETTINGS
@given(baggage=st.dictionaries(st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}",
                                             fullmatch=True),
                               st.text(max_size=50).map(lambda v: v.strip(' \t')),
                               max_size=10))
def test_round_trip_of_any_values(baggage):
    carrier = {}
    BAGGAGE.inject(SpanContext(None, None, baggage=baggage), carrier)
    expected = {k: v.encode('utf-8', 'replace').decode('utf-8', 'replace')
                for k, v in baggage.items()}
    assert (extract(carrier['baggage']) if carrier else None) == (expected or None)


@PROPERTY_SETTINGS
@given(value=st.one_of(st.text(), st.text(alphabet='k=v;,% \t%2C', max_size=40)))
def test_any_header_text_gives_none_or_a_valid_context(value):
    context = BAGGAGE.extract({'baggage': value})
    assert_valid_context(context)
    if context is not None:
        assert 0 < len(context.baggage) <= MAX_MEMBERS


@pytest.mark.parametrize('make_carrier', [
    pytest.param(lambda: {'baggage': 'k=' + 'v' * HUGE_SIZE}, id='one-member'),
    pytest.param(lambda: {'baggage': 'k=v,' * (HUGE_SIZE // 4)}, id='many-members'),
    pytest.param(lambda: {'baggage': ',' * HUGE_SIZE}, id='commas'),
])
def test_huge_values_are_bounded(make_carrier):
    context = assert_bounded(BAGGAGE.extract, make_carrier)
    assert context is None or len(context.baggage) <= 1
