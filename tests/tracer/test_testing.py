"""falcon_tracing_wsgi.testing: the in-memory reporter and make_tracer (with real B3/W3C)."""

from __future__ import annotations

import threading

import pytest
from opentracing import Format

from falcon_tracing_wsgi.testing import InMemoryReporter, make_tracer
from falcon_tracing_wsgi.tracer import ConstSampler, Tracer

TRACE_64 = 'a3ce929d0e0e4736'
TRACE_128 = '0af7651916cd43dd8448eb211c80319c'
PARENT = '00f067aa0ba902b7'


def test_in_memory_reporter_returns_copies_and_clears():
    reporter = InMemoryReporter()
    reporter.report('first')
    spans = reporter.spans
    spans.append('not kept')
    assert reporter.spans == ['first']
    reporter.clear()
    assert reporter.spans == []
    assert reporter.flush(1.0) is True and reporter.close(1.0) is True


def test_in_memory_reporter_is_thread_safe():
    reporter = InMemoryReporter()
    start = threading.Barrier(8)

    def work(index: int) -> None:
        start.wait(timeout=10)
        for n in range(1000):
            reporter.report((index, n))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(reporter.spans) == [(i, n) for i in range(8) for n in range(1000)]


def test_make_tracer_records_sampled_spans():
    tracer, reporter = make_tracer()
    assert isinstance(tracer, Tracer) and tracer.reporter is reporter
    with tracer.start_active_span('outer') as outer:
        with tracer.start_active_span('inner') as inner:
            pass
    assert reporter.spans == [inner.span, outer.span]
    assert inner.span.context.parent_id == outer.span.context.span_id


def test_make_tracer_injects_b3_and_w3c_and_extracts_them_back():
    tracer, _ = make_tracer()
    span = tracer.start_span('client')
    carrier = {}
    tracer.inject(span.context, Format.HTTP_HEADERS, carrier)
    names = {name.lower() for name in carrier}
    assert {'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'traceparent'} <= names
    for keep in ({'X-B3-TraceId', 'X-B3-SpanId', 'X-B3-Sampled'}, {'traceparent'}):
        only = {name: value for name, value in carrier.items() if name in keep}
        context = tracer.extract(Format.HTTP_HEADERS, only)
        assert (context.trace_id, context.span_id, context.sampled) == (
            span.context.trace_id, span.context.span_id, True)


@pytest.mark.parametrize('carrier, trace_id', [
    pytest.param({'X-B3-TraceId': TRACE_64, 'X-B3-SpanId': PARENT, 'X-B3-Sampled': '1'},
                 TRACE_64, id='b3-64-bit-kept'),
    pytest.param({'TraceParent': f'00-{TRACE_128}-{PARENT}-01'}, TRACE_128, id='w3c'),
])
def test_make_tracer_continues_an_inbound_trace(carrier, trace_id):
    """A server span is a child of the caller's span, in the caller's trace."""
    tracer, reporter = make_tracer()
    parent = tracer.extract(Format.HTTP_HEADERS, carrier)
    with tracer.start_active_span('server', child_of=parent):
        pass
    (span,) = reporter.spans
    assert (span.context.trace_id, span.context.parent_id) == (trace_id, PARENT)
    assert span.context.span_id != PARENT


def test_make_tracer_passes_options_through():
    tracer, reporter = make_tracer('b3', sampler=ConstSampler(False), trace_id_128bit=False)
    span = tracer.start_span('quiet')
    span.finish()
    assert len(span.context.trace_id) == 16 and reporter.spans == []
    carrier = {}
    tracer.inject(span.context, Format.HTTP_HEADERS, carrier)
    assert 'traceparent' not in carrier and carrier['X-B3-Sampled'] == '0'
