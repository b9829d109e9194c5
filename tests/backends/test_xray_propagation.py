"""X-Ray propagation: the ``X-Amzn-Trace-Id`` header, with the examples of the AWS docs.

Examples are from the AWS X-Ray developer guide (tracing header, trace id format) and
the Elastic Load Balancing guide (the ``Self`` field a load balancer adds).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentracing import Format

from falcon_tracing_wsgi.propagation import CompositePropagator, XRayPropagator, \
    build_propagator
from falcon_tracing_wsgi.propagation.b3 import B3MultiPropagator
from falcon_tracing_wsgi.propagation.xray import (EXTRA_KEY, MAX_HEADER_LENGTH,
                                                  MAX_OTHER_FIELDS, from_xray_trace_id,
                                                  to_xray_trace_id)
from falcon_tracing_wsgi.testing import make_tracer
from falcon_tracing_wsgi.tracer.context import SpanContext

from ..propagation._checks import (HUGE_SIZE, PROPERTY_SETTINGS, assert_bounded,
                                   assert_valid_context)

XRAY = XRayPropagator()
ROOT = '1-5759e988-bd862e3fe1be46a994272793'
TRACE = '5759e988bd862e3fe1be46a994272793'
PARENT = '53995c3f42cd8ad8'


def extract(value):
    return XRAY.extract({'x-amzn-trace-id': value})


@pytest.mark.parametrize('value, expected', [
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=1',
                 SpanContext(TRACE, PARENT, None, True), id='docs-with-parent'),
    pytest.param(f'Root={ROOT};Sampled=1', SpanContext(TRACE, None, None, True),
                 id='docs-root-only-is-a-trace-to-join'),
    pytest.param(f'Root={ROOT}', SpanContext(TRACE, None, None, None),
                 id='alb-root-alone-no-decision'),
    pytest.param(f'Root={ROOT};Sampled=0;Lineage=a87bd80c:1',
                 SpanContext(TRACE, None, None, False,
                             extra={EXTRA_KEY: 'Lineage=a87bd80c:1'}),
                 id='root-alone-keeps-decision-and-lineage'),
    pytest.param(f'Parent={PARENT};Sampled=1', SpanContext(None, None, None, True),
                 id='parent-without-root-keeps-only-the-decision'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=0',
                 SpanContext(TRACE, PARENT, None, False), id='not-sampled'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=?',
                 SpanContext(TRACE, PARENT, None, None), id='requested-is-defer'),
    pytest.param(f'Root={ROOT};Parent={PARENT}', SpanContext(TRACE, PARENT, None, None),
                 id='no-sampled-field'),
    pytest.param(f'Parent={PARENT};Sampled=1;Root={ROOT}',
                 SpanContext(TRACE, PARENT, None, True), id='any-order'),
    pytest.param(f' Root = {ROOT} ; Parent={PARENT};Sampled=1; ',
                 SpanContext(TRACE, PARENT, None, True), id='whitespace-and-trailing-semicolon'),
    pytest.param(f'root={ROOT.upper()};PARENT={PARENT.upper()};sampled=1',
                 SpanContext(TRACE, PARENT, None, True), id='any-case'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5',
                 SpanContext(TRACE, PARENT, None, True,
                             extra={EXTRA_KEY: 'Lineage=a87bd80c:1|68fd508a:5'}),
                 id='lineage-is-kept'),
    pytest.param('Self=1-67891234-12456789abcdef012345678;'
                 'Root=1-67891233-abcdef012345678912345678;CalledFrom=app',
                 SpanContext('67891233abcdef012345678912345678', None, None, None,
                             extra={EXTRA_KEY: 'CalledFrom=app'}),
                 id='elb-docs-self-dropped-trace-joined'),
    pytest.param('Self=1-67891234-12456789abcdef0123456789;'
                 'Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1',
                 SpanContext('67891233abcdef012345678912345678', PARENT, None, True),
                 id='self-dropped-trace-kept'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=1,Root=1-00000001-000000000000000000000001',
                 SpanContext(TRACE, PARENT, None, True), id='repeated-header-first-wins'),
    pytest.param('Sampled=0', SpanContext(None, None, None, False), id='decision-only'),
])
def test_extract(value, expected):
    context = extract(value)
    assert context == expected
    assert_valid_context(context, trace_only=True)


@pytest.mark.parametrize('value', [
    pytest.param(f'Root=2-5759e988-bd862e3fe1be46a994272793;Parent={PARENT}', id='version-2'),
    pytest.param(f'Root=1-5759e98-bd862e3fe1be46a994272793;Parent={PARENT}', id='short-epoch'),
    pytest.param(f'Root=1-5759e988-bd862e3fe1be46a99427279;Parent={PARENT}', id='short-random'),
    pytest.param(f'Root=5759e988bd862e3fe1be46a994272793;Parent={PARENT}', id='w3c-form'),
    pytest.param(f'Root=1-5759e98g-bd862e3fe1be46a994272793;Parent={PARENT}', id='non-hex'),
    pytest.param(f'Root=1-00000000-000000000000000000000000;Parent={PARENT}', id='zero-trace'),
    pytest.param(f'Root={ROOT};Parent=0000000000000000;Sampled=1', id='zero-parent'),
    pytest.param(f'Root={ROOT};Parent=53995c3f42cd8ad;Sampled=1', id='short-parent'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=yes', id='bad-sampled'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled', id='field-without-equals'),
    pytest.param(f'Root={ROOT};Root={ROOT};Parent={PARENT}', id='repeated-root'),
    pytest.param(f'Root={ROOT};Parent={PARENT};Sampled=1;' + 'x' * MAX_HEADER_LENGTH,
                 id='too-long'),
    pytest.param('', id='empty'),
    pytest.param(f'Parent={PARENT}', id='parent-without-root-or-decision'),
    pytest.param('Lineage=a87bd80c:1', id='nothing-we-use'),
])
def test_malformed_or_useless_gives_none(value):
    assert extract(value) is None


def test_absent_header_and_bad_carrier_give_none():
    assert XRAY.extract({}) is None
    assert XRAY.extract({'x-amzn-trace-id': 12}) is None  # breaks the carrier contract


@pytest.mark.parametrize('field, kept', [
    pytest.param('Lineage=a87bd80c:1|68fd508a:5', True, id='lineage'),
    pytest.param('Foo=bar', True, id='unknown-token'),
    pytest.param('Bad Key=1', False, id='space-in-key'),
    pytest.param('Foo=a b', False, id='space-in-value'),
    pytest.param('Foo=caf\u00e9', False, id='non-ascii-value'),
])
def test_other_fields_are_kept_when_safe(field, kept):
    context = extract(f'Root={ROOT};Parent={PARENT};Sampled=1;{field}')
    assert context is not None and context.trace_id == TRACE
    assert (context.extra == {EXTRA_KEY: field}) is kept
    assert (context.extra is None) is not kept


def test_at_most_max_other_fields_are_kept():
    fields = ';'.join(f'K{number}=v' for number in range(MAX_OTHER_FIELDS + 5))
    context = extract(f'Root={ROOT};Parent={PARENT};Sampled=1;{fields}')
    assert context.extra[EXTRA_KEY].count('=') == MAX_OTHER_FIELDS


@pytest.mark.parametrize('context, expected', [
    pytest.param(SpanContext(TRACE, PARENT, None, True),
                 f'Root={ROOT};Parent={PARENT};Sampled=1', id='sampled'),
    pytest.param(SpanContext(TRACE, PARENT, 'aaaaaaaaaaaaaaaa', False),
                 f'Root={ROOT};Parent={PARENT};Sampled=0', id='not-sampled-parent-not-sent'),
    pytest.param(SpanContext(TRACE, PARENT, None, True, True),
                 f'Root={ROOT};Parent={PARENT};Sampled=1', id='debug-is-sampled'),
    pytest.param(SpanContext(TRACE, PARENT, None, None),
                 f'Root={ROOT};Parent={PARENT};Sampled=?', id='undecided'),
    pytest.param(SpanContext('a3ce929d0e0e4736', PARENT, None, True),
                 f'Root=1-00000000-00000000a3ce929d0e0e4736;Parent={PARENT};Sampled=1',
                 id='64-bit-trace-padded'),
    pytest.param(SpanContext(TRACE, PARENT, None, True,
                             extra={EXTRA_KEY: 'Lineage=a87bd80c:1', 'other': 'x'}),
                 f'Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1',
                 id='kept-fields-written-back'),
])
def test_inject(context, expected):
    carrier = {}
    XRAY.inject(context, carrier)
    assert carrier == {'X-Amzn-Trace-Id': expected}


def test_inject_writes_nothing_without_ids():
    carrier = {}
    XRAY.inject(SpanContext(None, None, None, True, baggage={'a': 'b'}), carrier)
    assert carrier == {}


@given(st.integers(min_value=1, max_value=2 ** 128 - 1))
@PROPERTY_SETTINGS
def test_trace_id_mapping_round_trips(number):
    trace_id = f'{number:032x}'
    root = to_xray_trace_id(trace_id)
    assert len(root) == 35 and root.startswith('1-') and root[10] == '-'
    assert from_xray_trace_id(root) == trace_id
    carrier = {}
    XRAY.inject(SpanContext(trace_id, PARENT, None, True), carrier)
    assert XRAY.extract({'x-amzn-trace-id': carrier['X-Amzn-Trace-Id']}) == \
        SpanContext(trace_id, PARENT, None, True)


@given(st.text(max_size=300))
@PROPERTY_SETTINGS
def test_any_text_gives_a_valid_context_or_none(value):
    assert_valid_context(extract(value), trace_only=True)
    assert_valid_context(extract(f'Root={ROOT};Parent={PARENT};{value}'), trace_only=True)


def test_extract_is_bounded_on_huge_values():
    assert_bounded(XRAY.extract, lambda: {'x-amzn-trace-id': 'Root=' + 'a' * HUGE_SIZE})
    assert_bounded(XRAY.extract, lambda: {'x-amzn-trace-id': ';' * HUGE_SIZE})


def test_registered_and_composed_with_b3():
    composite = build_propagator('b3,xray')
    assert isinstance(composite, CompositePropagator)
    assert [type(p) for p in composite.propagators] == [B3MultiPropagator, XRayPropagator]
    lineage = 'Lineage=a87bd80c:1'
    context = composite.extract({'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT,
                                 'x-b3-sampled': '1',
                                 'x-amzn-trace-id': f'Root={ROOT};Parent={PARENT};Sampled=1;'
                                                    f'{lineage}'})
    # B3 wins (first); the X-Ray fields of the same trace are kept for the next hop.
    assert context.trace_id == TRACE and context.extra == {EXTRA_KEY: lineage}


def test_tracer_continues_an_xray_trace_and_passes_fields_on():
    tracer, reporter = make_tracer(('xray',))
    incoming = {'X-Amzn-Trace-Id': f'Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1'}
    parent = tracer.extract(Format.HTTP_HEADERS, incoming)
    with tracer.start_active_span('GET /', child_of=parent) as scope:
        outgoing = {}
        tracer.inject(scope.span.context, Format.HTTP_HEADERS, outgoing)
    (span,) = reporter.spans
    assert (span.context.trace_id, span.context.parent_id) == (TRACE, PARENT)
    assert outgoing == {'X-Amzn-Trace-Id': f'Root={ROOT};Parent={span.context.span_id};'
                                           f'Sampled=1;Lineage=a87bd80c:1'}


def test_tracer_follows_an_unsampled_xray_caller():
    tracer, reporter = make_tracer(('xray',))
    parent = tracer.extract(Format.HTTP_HEADERS,
                            {'x-amzn-trace-id': f'Root={ROOT};Parent={PARENT};Sampled=0'})
    tracer.start_span('GET /', child_of=parent).finish()
    assert reporter.spans == []


@pytest.mark.parametrize('header, sampled, others', [
    pytest.param(f'Root={ROOT}', True, '', id='alb-root-alone-the-sampler-decides'),
    pytest.param(f'Root={ROOT};Sampled=1', True, '', id='api-gateway-sampled'),
    pytest.param(f'Root={ROOT};Sampled=0;Lineage=a87bd80c:1', False, ';Lineage=a87bd80c:1',
                 id='unsampled-with-lineage'),
    pytest.param('Self=1-67891234-12456789abcdef0123456789;'
                 f'Root={ROOT};CalledFrom=app', True, ';CalledFrom=app',
                 id='elb-docs-self-dropped'),
])
def test_a_load_balancers_root_is_joined_by_the_server_span(header, sampled, others):
    """A Root without Parent (what an ALB sends): the wrapper's server span is a root span
    of that trace (no parent), and the app's outbound calls carry the trace on."""
    from falcon_tracing_wsgi import TracingConfig, TracingMiddleware

    from ..harness import call, make_environ

    tracer, reporter = make_tracer(('xray',))
    seen = {}

    def app(environ, start_response):
        seen['header'] = environ.get('HTTP_X_AMZN_TRACE_ID')
        seen['span'] = environ['falcon_tracing_wsgi.span']
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok']

    wrapped = TracingMiddleware(app, tracer=tracer, config=TracingConfig())
    call(wrapped, make_environ('/', headers={'X-Amzn-Trace-Id': header}))
    context = seen['span'].context
    assert (context.trace_id, context.parent_id, context.sampled) == (TRACE, None, sampled)
    assert seen['header'] == (f'Root={ROOT};Parent={context.span_id};'
                              f'Sampled={int(sampled)}{others}')
    assert [span.context.trace_id for span in reporter.spans] == ([TRACE] if sampled else [])


def test_a_root_to_join_wins_over_a_bare_decision_in_a_composite():
    composite = build_propagator('b3,xray')
    context = composite.extract({'x-b3-sampled': '1', 'x-amzn-trace-id': f'Root={ROOT}'})
    # No format names a span: the trace to join beats B3's decision (rule 1); the
    # decision of the winner stands (rule 4), so the sampler decides.
    assert (context.trace_id, context.span_id, context.sampled) == (TRACE, None, None)
