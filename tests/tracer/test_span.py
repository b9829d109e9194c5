"""Span lifecycle: the contract fields, finish once, unsampled spans, baggage, errors."""

from __future__ import annotations

import logging
import time

import pytest
from opentracing import logs as ot_logs
from opentracing import tags as ot_tags

from falcon_tracing_wsgi.testing import InMemoryReporter
from falcon_tracing_wsgi.tracer import ConstSampler, Span, Tracer, UnsampledSpan

from .fakes import BrokenReporter, FakePropagator


def _tracer(sampled: bool = True, reporter=None) -> tuple[Tracer, InMemoryReporter]:
    reporter = InMemoryReporter() if reporter is None else reporter
    return Tracer(reporter, ConstSampler(sampled), FakePropagator()), reporter


def test_a_finished_span_carries_the_contract_fields():
    """What reporters read: context, name, epoch start, duration, tags, logs."""
    tracer, reporter = _tracer()
    before = time.time()
    span = tracer.start_span('GET /users', tags={'http.method': 'GET'})
    span.set_tag('http.status_code', 200)
    span.finish()
    after = time.time()
    (reported,) = reporter.spans
    assert reported is span
    assert isinstance(span, Span)
    assert span.operation_name == 'GET /users'
    assert before <= span.start_time <= after
    assert 0.0 <= span.duration <= after - before
    assert span.tags == {'http.method': 'GET', 'http.status_code': 200}
    assert span.logs is None
    assert span.context.sampled is True and span.finished


def test_finish_takes_effect_only_once():
    """A second finish() neither reports again nor changes the duration."""
    tracer, reporter = _tracer()
    span = tracer.start_span('once', start_time=100.0)
    span.finish(finish_time=101.5)
    span.finish(finish_time=200.0)
    with span:
        pass
    assert reporter.spans == [span]
    assert span.duration == 1.5


@pytest.mark.parametrize('start, finish, duration', [
    pytest.param(100.0, 100.25, 0.25, id='explicit-both'),
    pytest.param(100.0, 99.0, 0.0, id='finish-before-start-clamped'),
])
def test_duration_from_explicit_times(start, finish, duration):
    tracer, _ = _tracer()
    span = tracer.start_span('timed', start_time=start)
    span.finish(finish_time=finish)
    assert span.duration == pytest.approx(duration)


def test_unsampled_span_records_nothing_and_is_never_reported():
    tracer, reporter = _tracer(sampled=False)
    span = tracer.start_span('quiet', tags={'a': 1})
    assert isinstance(span, UnsampledSpan)
    assert span.set_tag('b', 2) is span
    assert span.log_kv({'event': 'x'}) is span
    assert span.set_operation_name('renamed') is span
    span.finish()
    with pytest.raises(RuntimeError):
        with span:
            raise RuntimeError('boom')
    assert reporter.spans == []
    assert dict(span.tags) == {} and span.logs is None
    assert span.operation_name == 'renamed'
    assert span.context.sampled is False


@pytest.mark.parametrize('sampled', [pytest.param(True, id='sampled'),
                                     pytest.param(False, id='unsampled')])
def test_baggage_is_copy_on_write(sampled):
    """Setting baggage makes a new context; a context already handed out never changes."""
    tracer, _ = _tracer(sampled)
    span = tracer.start_span('bag')
    before = span.context
    early_child = tracer.start_span('early', child_of=span)
    assert span.set_baggage_item('user', 'alice') is span
    assert span.context is not before
    assert before.baggage == {} and early_child.context.baggage == {}
    assert span.get_baggage_item('user') == 'alice'
    late_child = tracer.start_span('late', child_of=span)
    assert late_child.get_baggage_item('user') == 'alice'
    span.set_baggage_item('user', None)
    assert span.get_baggage_item('user') is None
    assert late_child.get_baggage_item('user') == 'alice'
    assert span.context.span_id == before.span_id


def test_log_kv_timestamps_and_copies_fields():
    tracer, _ = _tracer()
    span = tracer.start_span('logs')
    fields = {'event': 'first'}
    before = time.time()
    span.log_kv(fields)
    after = time.time()
    fields['event'] = 'changed later'
    span.log_kv({'event': 'second'}, timestamp=12.5)
    (first_ts, first), (second_ts, second) = span.logs
    assert before <= first_ts <= after and first == {'event': 'first'}
    assert (second_ts, second) == (12.5, {'event': 'second'})


def test_exit_with_an_error_records_it_the_opentracing_way():
    """error=True plus an error log with message, object and kind; the error propagates."""
    tracer, reporter = _tracer()
    error = ValueError('bad input')
    with pytest.raises(ValueError):
        with tracer.start_span('fails') as span:
            raise error
    (reported,) = reporter.spans
    assert reported.tags[ot_tags.ERROR] is True
    (_, fields), = reported.logs
    assert fields[ot_logs.EVENT] == ot_tags.ERROR
    assert fields[ot_logs.MESSAGE] == 'bad input'
    # Recorded as text (the span limits): no reference to the exception or its frames.
    assert fields[ot_logs.ERROR_OBJECT] == 'ValueError: bad input'
    assert fields[ot_logs.ERROR_KIND] is ValueError
    assert 'in test_exit_with_an_error_records_it_the_opentracing_way' in fields['stack']
    assert span.duration is not None


def test_a_failing_reporter_never_reaches_the_app(caplog):
    tracer, _ = _tracer(reporter=BrokenReporter())
    span = tracer.start_span('reported')
    with caplog.at_level(logging.WARNING, 'falcon_tracing_wsgi'):
        span.finish()
    assert span.finished
    assert 'reporter failed' in caplog.text


@pytest.mark.parametrize('cls, fields', [
    pytest.param(Span, {'_context', 'operation_name', 'start_time', 'duration', '_tags',
                        'logs'}, id='span'),
    pytest.param(UnsampledSpan, {'_context', 'operation_name'}, id='unsampled'),
])
def test_spans_are_slotted_and_allocate_no_dict_in_normal_use(cls, fields):
    tracer, _ = _tracer(cls is Span)
    span = tracer.start_span('slots')
    span.set_tag('k', 'v').log_kv({'a': 1}).set_baggage_item('b', 'c')
    span.finish()
    assert isinstance(span, cls)
    assert fields <= set(cls.__slots__)
    assert vars(span) == {}
