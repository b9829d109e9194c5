"""Tracer: parent selection, sampling rules, ids, and inject/extract for every format."""

from __future__ import annotations

import logging

import opentracing
import pytest
from opentracing import (Format, InvalidCarrierException, UnsupportedFormatException,
                         child_of, follows_from)

from falcon_tracing_wsgi.propagation import build_propagator
from falcon_tracing_wsgi.testing import InMemoryReporter
from falcon_tracing_wsgi.tracer import ConstSampler, SpanContext, Tracer, UnsampledSpan
from falcon_tracing_wsgi.tracer.context import valid_span_id, valid_trace_id
from falcon_tracing_wsgi.tracer.ids import CheckedIdGenerator, RandomIdGenerator, XRayIdGenerator

from .fakes import (BrokenPropagator, BrokenReporter, BrokenSampler, CaseInsensitiveCarrier,
                    FakePropagator, RecordingReporter, RecordingSampler, SequentialIds)

TRACE_128 = '463ac35c9f6413ad48485a3953bb6124'
TRACE_64 = 'a3ce929d0e0e4736'
SPAN = '0020000000000001'


def make(sampler=None, *, propagator=None, reporter=None, **kwargs):
    reporter = InMemoryReporter() if reporter is None else reporter
    tracer = Tracer(reporter, ConstSampler(True) if sampler is None else sampler,
                    FakePropagator() if propagator is None else propagator, **kwargs)
    return tracer, reporter


def headers(trace=TRACE_128, span=SPAN, sampled=None, debug=False, **baggage):
    carrier = {}
    if trace is not None:
        carrier['X-Trace'] = trace
    if span is not None:
        carrier['X-Span'] = span
    if sampled is not None:
        carrier['X-Sampled'] = '1' if sampled else '0'
    if debug:
        carrier['X-Debug'] = '1'
    carrier.update({'X-Bag-' + key: value for key, value in baggage.items()})
    return carrier


# -- sampling -------------------------------------------------------------------------------

@pytest.mark.parametrize('trust, inbound, sampler_says, sampled, debug, asked', [
    pytest.param(True, headers(sampled=True), False, True, False, False, id='trusted-yes'),
    pytest.param(True, headers(sampled=False), True, False, False, False, id='trusted-no'),
    pytest.param(True, headers(), True, True, False, True, id='trusted-defer-sampler-yes'),
    pytest.param(True, headers(), False, False, False, True, id='trusted-defer-sampler-no'),
    pytest.param(True, headers(sampled=False, debug=True), False, True, True, False,
                 id='trusted-debug-forces'),
    pytest.param(True, headers(debug=True), False, True, True, False,
                 id='trusted-debug-without-sampled'),
    pytest.param(False, headers(sampled=True), False, False, False, True, id='untrusted-yes'),
    pytest.param(False, headers(sampled=False), True, True, False, True, id='untrusted-no'),
    pytest.param(False, headers(debug=True), False, False, False, True, id='untrusted-debug'),
    pytest.param(False, headers(), True, True, False, True, id='untrusted-defer'),
])
def test_sampling_of_a_child_of_an_extracted_context(trust, inbound, sampler_says, sampled,
                                                     debug, asked):
    """A trusted inbound decision is followed; otherwise the sampler decides on the trace id."""
    sampler = RecordingSampler(sampler_says)
    tracer, _ = make(sampler, trust_inbound_sampling=trust)
    parent = tracer.extract(Format.HTTP_HEADERS, inbound)
    span = tracer.start_span('server', child_of=parent)
    assert span.context.sampled is sampled
    assert span.context.debug is debug
    assert span.context.trace_id == TRACE_128
    assert span.context.parent_id == SPAN
    assert sampler.calls == ([(TRACE_128, 'server')] if asked else [])


@pytest.mark.parametrize('trust, inbound_sampled, sampler_says, sampled', [
    pytest.param(True, False, True, False, id='trusted-keeps-no'),
    pytest.param(True, True, False, True, id='trusted-keeps-yes'),
    pytest.param(False, False, True, True, id='untrusted-asks-sampler'),
])
def test_a_sampling_only_parent_starts_a_new_trace(trust, inbound_sampled, sampler_says,
                                                   sampled):
    """A context with a decision but no ids: new trace id, no parent, decision if trusted."""
    sampler = RecordingSampler(sampler_says)
    tracer, _ = make(sampler, trust_inbound_sampling=trust)
    parent = tracer.extract(Format.HTTP_HEADERS,
                            headers(trace=None, span=None, sampled=inbound_sampled, tenant='t1'))
    assert parent is not None and not parent.has_ids
    span = tracer.start_span('server', child_of=parent)
    assert span.context.sampled is sampled
    assert len(span.context.trace_id) == 32 and span.context.parent_id is None
    assert span.get_baggage_item('tenant') == 't1'


@pytest.mark.parametrize('trust', [pytest.param(True, id='trusted'),
                                   pytest.param(False, id='untrusted')])
@pytest.mark.parametrize('root_sampled', [pytest.param(True, id='root-sampled'),
                                          pytest.param(False, id='root-unsampled')])
def test_a_child_of_a_local_span_inherits_without_asking(trust, root_sampled):
    """Local children never consult the sampler, even one that changed its mind."""
    sampler = RecordingSampler(root_sampled, not root_sampled)
    tracer, _ = make(sampler, trust_inbound_sampling=trust)
    with tracer.start_active_span('root') as scope:
        implicit = tracer.start_span('implicit')
        explicit = tracer.start_span('explicit', child_of=scope.span.context,
                                     ignore_active_span=True)
    assert len(sampler.calls) == 1
    for child in (implicit, explicit):
        assert child.context.sampled is root_sampled
        assert child.context.parent_id == scope.span.context.span_id
        assert child.context.trace_id == scope.span.context.trace_id
        assert isinstance(child, UnsampledSpan) is (not root_sampled)


def test_the_sampler_is_asked_with_the_new_trace_id_and_name():
    sampler = RecordingSampler(True)
    tracer, _ = make(sampler, id_generator=SequentialIds())
    span = tracer.start_span('root-op')
    assert sampler.calls == [(span.context.trace_id, 'root-op')]


def test_a_failing_sampler_means_not_sampled(caplog):
    tracer, reporter = make(BrokenSampler())
    with caplog.at_level(logging.WARNING, 'falcon_tracing_wsgi'):
        span = tracer.start_span('root')
    span.finish()
    assert span.context.sampled is False and reporter.spans == []
    assert 'sampler failed' in caplog.text


# -- ids and parenting -------------------------------------------------------------------------

@pytest.mark.parametrize('wide, width', [pytest.param(True, 32, id='128-bit'),
                                         pytest.param(False, 16, id='64-bit')])
def test_new_trace_ids_have_the_configured_width(wide, width):
    tracer, _ = make(trace_id_128bit=wide)
    span = tracer.start_span('root')
    assert len(span.context.trace_id) == width and len(span.context.span_id) == 16
    assert span.context.parent_id is None


@pytest.mark.parametrize('wide', [pytest.param(True, id='tracer-128'),
                                  pytest.param(False, id='tracer-64')])
@pytest.mark.parametrize('trace_id', [pytest.param(TRACE_64, id='inbound-64'),
                                      pytest.param(TRACE_128, id='inbound-128')])
def test_an_inbound_trace_id_keeps_its_width(wide, trace_id):
    tracer, _ = make(trace_id_128bit=wide)
    parent = tracer.extract(Format.HTTP_HEADERS, headers(trace=trace_id, sampled=True))
    span = tracer.start_span('server', child_of=parent)
    out = {}
    tracer.inject(span.context, Format.HTTP_HEADERS, out)
    assert span.context.trace_id == trace_id == out['X-Trace']
    assert span.context.span_id != SPAN


def _ctx(span_id):
    return SpanContext(TRACE_128, span_id, None, True)


@pytest.mark.parametrize('kwargs, expected_parent', [
    pytest.param({'child_of': _ctx('00000000000000aa')}, '00000000000000aa',
                 id='child-of-context'),
    pytest.param({'references': [follows_from(_ctx('00000000000000bb'))]},
                 '00000000000000bb', id='follows-from'),
    pytest.param({'references': [child_of(None), follows_from(None),
                                 child_of(_ctx('00000000000000cc')),
                                 follows_from(_ctx('00000000000000dd'))]},
                 '00000000000000cc', id='first-non-empty-reference'),
    pytest.param({'references': follows_from(_ctx('00000000000000ee'))},
                 '00000000000000ee', id='single-reference-not-in-a-list'),
    pytest.param({'references': [child_of(None)]}, 'ACTIVE', id='empty-references-use-active'),
    pytest.param({}, 'ACTIVE', id='active-span'),
    pytest.param({'ignore_active_span': True}, None, id='ignore-active'),
    pytest.param({'child_of': _ctx('00000000000000ff'), 'ignore_active_span': True},
                 '00000000000000ff', id='explicit-parent-despite-ignore'),
    pytest.param({'child_of': opentracing.SpanContext()}, None, id='foreign-context-is-root'),
])
def test_parent_selection(kwargs, expected_parent):
    tracer, _ = make()
    with tracer.start_active_span('active') as scope:
        span = tracer.start_span('child', **kwargs)
    if expected_parent == 'ACTIVE':
        expected_parent = scope.span.context.span_id
    assert span.context.parent_id == expected_parent


def _refs(span):
    return None if span.references is None else [
        (reference.type, reference.referenced_context.span_id)
        for reference in span.references]


@pytest.mark.parametrize('references, parent, links', [
    pytest.param([child_of(_ctx('00000000000000a1'))], '00000000000000a1', None,
                 id='one-child-of-is-the-parent-only'),
    pytest.param([follows_from(_ctx('00000000000000b1')), child_of(_ctx('00000000000000a1'))],
                 '00000000000000a1', [('follows_from', '00000000000000b1')],
                 id='a-later-child-of-wins-the-parent-follows-from-becomes-a-link'),
    pytest.param([follows_from(_ctx('00000000000000b1'))], '00000000000000b1',
                 [('follows_from', '00000000000000b1')],
                 id='a-follows-from-parent-is-also-a-link'),
    pytest.param([child_of(_ctx('00000000000000a1')), child_of(_ctx('00000000000000a2')),
                  follows_from(_ctx('00000000000000b1'))], '00000000000000a1',
                 [('child_of', '00000000000000a2'), ('follows_from', '00000000000000b1')],
                 id='further-references-are-links-in-order'),
    pytest.param([child_of(_ctx('00000000000000a1')), follows_from(opentracing.SpanContext()),
                  follows_from(SpanContext(None, None, None, True))], '00000000000000a1', None,
                 id='foreign-and-id-less-contexts-are-not-links'),
])
def test_references_other_than_the_parent_are_kept_as_links(references, parent, links):
    tracer, _ = make()
    span = tracer.start_span('child', references=references)
    assert span.context.parent_id == parent
    assert _refs(span) == links


def test_child_of_keeps_no_references():
    tracer, _ = make()
    span = tracer.start_span('child', child_of=_ctx('00000000000000a1'),
                             references=[follows_from(_ctx('00000000000000b1'))])
    assert span.references is None  # child_of given: references are not consulted


def test_child_of_a_span_object():
    tracer, _ = make()
    parent = tracer.start_span('parent')
    span = tracer.start_span('child', child_of=parent)
    assert span.context.parent_id == parent.context.span_id


def test_child_context_inherits_baggage_and_pass_through_fields():
    tracer, _ = make()
    parent = SpanContext(TRACE_64, SPAN, None, True, False, {'k': 'v'}, 'vendor=1',
                         {'Self': 'x'})
    span = tracer.start_span('child', child_of=parent)
    assert span.context.baggage == {'k': 'v'}
    assert (span.context.tracestate, span.context.extra) == ('vendor=1', {'Self': 'x'})


def test_start_span_arguments():
    """Tags are used as given, the start time is kept, a missing name becomes ''."""
    tracer, _ = make()
    tags = {'a': 1}
    span = tracer.start_span(tags=tags, start_time=42.0)
    assert span.tags is tags and span.start_time == 42.0 and span.operation_name == ''
    unsampled_tracer, _ = make(ConstSampler(False))
    assert dict(unsampled_tracer.start_span('x', tags={'a': 1}).tags) == {}


def test_start_active_span_activates_and_finishes_on_close():
    tracer, reporter = make()
    with tracer.start_active_span('outer') as outer:
        assert tracer.active_span is outer.span
        with tracer.start_active_span('inner', finish_on_close=False) as inner:
            assert tracer.active_span is inner.span
        assert tracer.active_span is outer.span
    assert tracer.active_span is None
    assert [s.operation_name for s in reporter.spans] == ['outer']
    assert not inner.span.finished


# -- construction, flush, close ---------------------------------------------------------------

@pytest.mark.parametrize('args, role', [
    pytest.param((object(), ConstSampler(True), FakePropagator()), 'reporter', id='reporter'),
    pytest.param((InMemoryReporter(), object(), FakePropagator()), 'sampler', id='sampler'),
    pytest.param((InMemoryReporter(), ConstSampler(True), object()), 'propagator',
                 id='propagator'),
])
def test_collaborators_are_checked_at_construction(args, role):
    with pytest.raises(TypeError, match=role):
        Tracer(*args)


def test_id_generator_is_checked_at_construction():
    with pytest.raises(TypeError, match='id_generator'):
        make(id_generator=object())


class _FixedIds:
    """A generator that always gives the same two ids."""

    def __init__(self, trace_id, span_id) -> None:
        self._trace_id, self._span_id = trace_id, span_id

    def trace_id(self):
        return self._trace_id

    def span_id(self):
        return self._span_id


_GOOD_SPAN = '00f067aa0ba902b7'


@pytest.mark.parametrize('trace_id, span_id, bad_per_span', [
    pytest.param(TRACE_128, _GOOD_SPAN, 0, id='valid-128'),
    pytest.param(TRACE_64, _GOOD_SPAN, 0, id='valid-64'),
    pytest.param(TRACE_128.upper(), _GOOD_SPAN, 1, id='upper-case-trace-id'),
    pytest.param(TRACE_128[:20], _GOOD_SPAN, 1, id='trace-id-of-another-width'),
    pytest.param(int(TRACE_128, 16), _GOOD_SPAN, 1, id='trace-id-as-int'),
    pytest.param('g' * 32, _GOOD_SPAN, 1, id='trace-id-not-hex'),
    pytest.param(None, _GOOD_SPAN, 1, id='no-trace-id'),
    pytest.param(TRACE_128, _GOOD_SPAN + '0', 1, id='span-id-too-long'),
    pytest.param(TRACE_128, '00f067aa0ba902b\n', 1, id='span-id-with-a-newline'),
    pytest.param(TRACE_128, 42, 1, id='span-id-as-int'),
    pytest.param('"' * 32, '"' * 16, 2, id='both-quotes'),
])
def test_a_given_id_generator_s_invalid_ids_are_replaced_counted_and_logged_once(
        caplog, trace_id, span_id, bad_per_span):
    tracer, reporter = make(id_generator=_FixedIds(trace_id, span_id))
    assert type(tracer.id_generator) is CheckedIdGenerator
    with caplog.at_level(logging.WARNING, logger='falcon_tracing_wsgi.tracer.ids'):
        for _ in range(3):
            tracer.start_span('root').finish()
    for span in reporter.spans:
        context = span.context
        assert valid_trace_id(context.trace_id) and valid_span_id(context.span_id)
        assert (context.trace_id == trace_id) is valid_trace_id(trace_id)
        assert (context.span_id == span_id) is valid_span_id(span_id)
    assert tracer.id_generator.replaced_ids == 3 * bad_per_span
    warnings = [record for record in caplog.records if 'replaced' in record.getMessage()]
    assert len(warnings) == (1 if bad_per_span else 0)


@pytest.mark.parametrize('generator', [RandomIdGenerator(), RandomIdGenerator(False),
                                       XRayIdGenerator()])
def test_this_package_s_id_generators_are_used_as_they_are(generator):
    tracer, _ = make(id_generator=generator)
    assert tracer.id_generator is generator


def test_a_checked_generator_keeps_the_random_trace_ids_flag():
    class RandomFixed(_FixedIds):
        random_trace_ids = True

    assert make(id_generator=RandomFixed(TRACE_128, _GOOD_SPAN))[0].id_generator \
        .random_trace_ids is True
    assert make(id_generator=_FixedIds(TRACE_128, _GOOD_SPAN))[0].id_generator \
        .random_trace_ids is False


class _GivenContext:
    """A propagator of someone else's that extracts one fixed context."""

    fields = ('x-any',)

    def __init__(self, context, checks_ids=None) -> None:
        self.context = context
        if checks_ids is not None:
            self.checks_ids = checks_ids

    def extract(self, carrier):
        return self.context

    def inject(self, context, carrier):
        pass


@pytest.mark.parametrize('context, kept', [
    pytest.param(SpanContext(TRACE_128, SPAN, _GOOD_SPAN, True), True, id='valid'),
    pytest.param(SpanContext(None, None, None, True, baggage={'k': 'v'}), True,
                 id='decision-and-baggage-only'),
    pytest.param(SpanContext(TRACE_128.upper(), SPAN), False, id='upper-case-trace-id'),
    pytest.param(SpanContext(TRACE_128, 'x' * 16), False, id='span-id-not-hex'),
    pytest.param(SpanContext(TRACE_128, SPAN, 'abc'), False, id='short-parent-id'),
    pytest.param(SpanContext(TRACE_128, None, None, True), True,
                 id='trace-id-alone-is-a-trace-to-join'),
    pytest.param(SpanContext('x' * 32, None, None, True), False, id='trace-id-alone-not-hex'),
    pytest.param(SpanContext(TRACE_128, None, SPAN, True), False,
                 id='trace-id-and-parent-without-span-id'),
    pytest.param(SpanContext(12, SPAN), False, id='trace-id-as-int'),
])
def test_a_given_propagator_s_context_with_invalid_ids_is_not_extracted(context, kept):
    tracer, _ = make(propagator=_GivenContext(context))
    extracted = tracer.extract(Format.HTTP_HEADERS, {'X-Any': '1'})
    assert extracted is (context if kept else None)
    # Either way the next span has valid ids: a child of it, or a new trace.
    span = tracer.start_span('server', child_of=extracted)
    assert valid_trace_id(span.context.trace_id) and valid_span_id(span.context.span_id)


def test_a_propagator_that_says_it_checks_ids_is_taken_at_its_word():
    # The built-in codecs say so and check every id they read (tests/propagation):
    # the tracer does not check their contexts again.
    unchecked = SpanContext(TRACE_128.upper(), SPAN)
    tracer, _ = make(propagator=_GivenContext(unchecked, checks_ids=True))
    assert tracer.extract(Format.HTTP_HEADERS, {'X-Any': '1'}) is unchecked
    tracer, _ = make(propagator=_GivenContext(unchecked, checks_ids='yes'))
    assert tracer.extract(Format.HTTP_HEADERS, {'X-Any': '1'}) is None


@pytest.mark.parametrize('result', [pytest.param(True, id='ok'),
                                    pytest.param(False, id='timed-out')])
def test_flush_and_close_delegate_to_the_reporter(result):
    reporter = RecordingReporter(result)
    tracer, _ = make(reporter=reporter)
    assert tracer.reporter is reporter
    assert tracer.flush(1.5) is result
    assert tracer.close(0.5) is result
    assert reporter.calls == [('flush', 1.5), ('close', 0.5)]


def test_flush_and_close_never_raise(caplog):
    tracer, _ = make(reporter=BrokenReporter())
    with caplog.at_level(logging.WARNING, 'falcon_tracing_wsgi'):
        assert tracer.flush(1) is False
        assert tracer.close(1) is False
    assert 'failed to flush' in caplog.text and 'failed to close' in caplog.text


# -- inject / extract -----------------------------------------------------------------------------

@pytest.mark.parametrize('fmt', [pytest.param(Format.HTTP_HEADERS, id='http-headers'),
                                 pytest.param(Format.TEXT_MAP, id='text-map')])
@pytest.mark.parametrize('sampled', [pytest.param(True, id='sampled'),
                                     pytest.param(False, id='unsampled')])
def test_text_round_trip(fmt, sampled):
    tracer, _ = make(ConstSampler(sampled))
    span = tracer.start_span('client').set_baggage_item('user', 'alice')
    carrier = {}
    tracer.inject(span.context, fmt, carrier)
    extracted = tracer.extract(fmt, carrier)
    assert (extracted.trace_id, extracted.span_id, extracted.sampled) == (
        span.context.trace_id, span.context.span_id, sampled)
    assert extracted.baggage == {'user': 'alice'}


def test_inject_accepts_a_span():
    tracer, _ = make()
    span = tracer.start_span('client')
    carrier = {}
    tracer.inject(span, Format.HTTP_HEADERS, carrier)
    assert carrier['X-Span'] == span.context.span_id


def test_extract_lower_cases_names_once_for_the_propagator():
    propagator = FakePropagator()
    tracer, _ = make(propagator=propagator)
    context = tracer.extract(Format.HTTP_HEADERS, {'X-TRACE': TRACE_128, 'x-Span': SPAN,
                                                   'X-Sampled': '1'})
    assert (context.trace_id, context.span_id, context.sampled) == (TRACE_128, SPAN, True)
    (seen,) = propagator.seen
    assert set(seen) == {'x-trace', 'x-span', 'x-sampled'}


def test_extract_passes_a_case_insensitive_carrier_through_unchanged():
    propagator = FakePropagator()
    tracer, _ = make(propagator=propagator)
    carrier = CaseInsensitiveCarrier({'x-trace': TRACE_128, 'x-span': SPAN})
    assert tracer.extract(Format.HTTP_HEADERS, carrier).span_id == SPAN
    assert propagator.seen == [carrier] and propagator.seen[0] is carrier


@pytest.mark.parametrize('carrier', [
    pytest.param({}, id='empty'),
    pytest.param({'Accept': 'text/html'}, id='unrelated-headers'),
    pytest.param({'X-Trace': 'zz' * 16, 'X-Span': SPAN}, id='invalid-trace-id'),
    pytest.param({'X-Trace': TRACE_128}, id='missing-span-id'),
])
def test_extract_returns_none_for_absent_or_invalid_context(carrier):
    tracer, _ = make()
    assert tracer.extract(Format.HTTP_HEADERS, carrier) is None


def test_extract_skips_non_string_names():
    tracer, _ = make()
    carrier = {1: 'one', 'X-Trace': TRACE_128, 'X-Span': SPAN}
    assert tracer.extract(Format.TEXT_MAP, carrier).trace_id == TRACE_128


def test_a_failing_propagator_never_raises(caplog):
    tracer, _ = make(propagator=BrokenPropagator())
    span = tracer.start_span('x')
    carrier = {}
    with caplog.at_level(logging.DEBUG, 'falcon_tracing_wsgi'):
        assert tracer.extract(Format.HTTP_HEADERS, {'X-Trace': TRACE_128}) is None
        tracer.inject(span.context, Format.HTTP_HEADERS, carrier)
    assert carrier == {}
    assert 'could not extract' in caplog.text and 'failed to inject' in caplog.text


def test_inject_skips_another_tracers_context():
    tracer, _ = make()
    carrier = {}
    tracer.inject(opentracing.SpanContext(), Format.HTTP_HEADERS, carrier)
    tracer.inject(opentracing.SpanContext(), Format.BINARY, bytearray())
    assert carrier == {}


@pytest.mark.parametrize('call', [
    pytest.param(lambda t, c: t.inject(c, Format.HTTP_HEADERS, 'not a mapping'),
                 id='inject-headers-into-str'),
    pytest.param(lambda t, c: t.inject(c, Format.TEXT_MAP, ('a', 'b')),
                 id='inject-text-into-tuple'),
    pytest.param(lambda t, c: t.inject(c, Format.BINARY, b'immutable'),
                 id='inject-binary-into-bytes'),
    pytest.param(lambda t, c: t.inject(c, Format.BINARY, {}), id='inject-binary-into-dict'),
    pytest.param(lambda t, c: t.extract(Format.HTTP_HEADERS, 42), id='extract-headers-int'),
    pytest.param(lambda t, c: t.extract(Format.TEXT_MAP, [('x-trace', TRACE_128)]),
                 id='extract-text-list'),
    pytest.param(lambda t, c: t.extract(Format.BINARY, {}), id='extract-binary-dict'),
    pytest.param(lambda t, c: t.extract(Format.BINARY, 'text'), id='extract-binary-str'),
])
def test_wrong_carrier_types_raise_invalid_carrier(call):
    tracer, _ = make()
    with pytest.raises(InvalidCarrierException):
        call(tracer, tracer.start_span('x').context)


@pytest.mark.parametrize('fmt', [pytest.param('kiss', id='string'),
                                 pytest.param(object(), id='object'),
                                 pytest.param(None, id='none')])
def test_unknown_formats_raise_unsupported_format(fmt):
    tracer, _ = make()
    context = tracer.start_span('x').context
    with pytest.raises(UnsupportedFormatException):
        tracer.inject(context, fmt, {})
    with pytest.raises(UnsupportedFormatException):
        tracer.extract(fmt, {})


@pytest.mark.parametrize('context', [
    pytest.param(SpanContext(TRACE_128, SPAN, None, True), id='sampled-128'),
    pytest.param(SpanContext(TRACE_64, SPAN, 'ffffffffffffffff', False), id='unsampled-64-parent'),
    pytest.param(SpanContext(TRACE_128, SPAN, None, None), id='deferred'),
    pytest.param(SpanContext(TRACE_128, SPAN, None, True, True), id='debug'),
    pytest.param(SpanContext(None, None, None, False), id='sampling-only'),
    pytest.param(SpanContext(None, None, None, None, False, {'k': 'v'}), id='baggage-only'),
    pytest.param(SpanContext(TRACE_128, SPAN, None, True, False,
                             {'user': 'zoë', 'empty': '', 'emoji': '\U0001f600'}),
                 id='unicode-baggage'),
    pytest.param(SpanContext(TRACE_128, SPAN, None, True, False, None, 'a=1,b=2',
                             {'Self': '1-2-3'}), id='tracestate-and-extra'),
])
def test_binary_round_trip(context):
    tracer, _ = make()
    carrier = bytearray()
    tracer.inject(context, Format.BINARY, carrier)
    assert tracer.extract(Format.BINARY, carrier) == context
    assert tracer.extract(Format.BINARY, bytes(carrier)) == context
    assert tracer.extract(Format.BINARY, memoryview(bytes(carrier))) == context


def test_binary_encoding_is_compact():
    tracer, _ = make()
    carrier = bytearray()
    tracer.inject(SpanContext(TRACE_128, SPAN, None, True), Format.BINARY, carrier)
    assert len(carrier) == 28


def _encoded(context):
    carrier = bytearray()
    make()[0].inject(context, Format.BINARY, carrier)
    return bytes(carrier)


_GOOD = _encoded(SpanContext(TRACE_64, SPAN, None, True, False, {'k': 'v'}))


@pytest.mark.parametrize('data', [
    pytest.param(b'', id='empty'),
    pytest.param(b'\x01', id='version-only'),
    pytest.param(b'\x02' + _GOOD[1:], id='unknown-version'),
    pytest.param(_GOOD[:-1], id='truncated'),
    pytest.param(_GOOD + b'\x00', id='trailing-byte'),
    pytest.param(_GOOD[:2] + b'\x00' * 8 + _GOOD[10:], id='zero-trace-id'),
    pytest.param(b'\x01\x10\x00\x00', id='wide-flag-without-ids'),
    pytest.param(b'\x01\x00\x00\x01\x00\x01\xff\x00\x01v', id='invalid-utf8'),
    pytest.param(b'\xff' * 64, id='garbage'),
])
def test_invalid_binary_gives_none(data):
    tracer, _ = make()
    assert tracer.extract(Format.BINARY, bytearray(data)) is None


def test_untrusted_extract_drops_the_decision_in_every_format():
    tracer, _ = make(trust_inbound_sampling=False)
    inbound = SpanContext(TRACE_128, SPAN, None, True, True, {'k': 'v'})
    binary = bytearray()
    tracer.inject(inbound, Format.BINARY, binary)
    text = {}
    tracer.inject(inbound, Format.TEXT_MAP, text)
    for fmt, carrier in ((Format.BINARY, binary), (Format.TEXT_MAP, text)):
        context = tracer.extract(fmt, carrier)
        assert (context.sampled, context.debug) == (None, False)
        assert (context.trace_id, context.span_id, context.baggage) == (TRACE_128, SPAN,
                                                                       {'k': 'v'})


# --- the W3C random trace-id flag -------------------------------------------------------

class _RandomSequentialIds(SequentialIds):
    random_trace_ids = True


@pytest.mark.parametrize('kwargs, random', [
    pytest.param({}, True, id='random-128'),
    pytest.param({'trace_id_128bit': False}, True, id='random-64'),
    pytest.param({'id_generator': XRayIdGenerator()}, True, id='xray-ids'),
    pytest.param({'id_generator': SequentialIds()}, False, id='generator-does-not-say'),
    pytest.param({'id_generator': _RandomSequentialIds()}, True, id='generator-says-so'),
])
def test_new_traces_carry_the_generators_random_flag(kwargs, random):
    tracer, _ = make(**kwargs)
    root = tracer.start_span('root')
    child = tracer.start_span('child', child_of=root)
    decision_only = tracer.start_span('new', child_of=SpanContext(None, None, None, True))
    assert root.context.random_trace_id is random
    assert child.context.random_trace_id is random
    assert decision_only.context.random_trace_id is random


@pytest.mark.parametrize('trust', [pytest.param(True, id='trusted'),
                                   pytest.param(False, id='untrusted')])
@pytest.mark.parametrize('flags, inbound', [pytest.param('03', True, id='inbound-random'),
                                            pytest.param('01', False, id='inbound-not-random')])
def test_an_extracted_random_flag_is_kept_by_children(trust, flags, inbound):
    # The generator's flag must not leak onto a continued trace, nor hide the caller's.
    tracer, _ = make(trust_inbound_sampling=trust, propagator=build_propagator(('w3c',)),
                     id_generator=SequentialIds() if inbound else _RandomSequentialIds())
    parent = tracer.extract(Format.HTTP_HEADERS,
                            {'traceparent': f'00-{TRACE_128}-{SPAN}-{flags}'})
    child = tracer.start_span('child', child_of=parent)
    grandchild = tracer.start_span('grandchild', child_of=child)
    assert parent.random_trace_id is inbound
    assert child.context.random_trace_id is inbound
    assert grandchild.context.random_trace_id is inbound
    carrier = {}
    tracer.inject(grandchild, Format.HTTP_HEADERS, carrier)
    assert carrier['traceparent'][-2:] == ('03' if inbound else '01')
