"""The real tracer's spans, reported through BatchReporter to the collector, are valid."""

from __future__ import annotations

import pytest

from falcon_tracing_wsgi.propagation.b3 import B3MultiPropagator
from falcon_tracing_wsgi.tracer import ConstSampler, Tracer
from falcon_tracing_wsgi.zipkin import BatchReporter, Endpoint, HttpSender, JsonV2Encoder
from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector


def test_tracer_spans_reach_the_collector_as_valid_zipkin(collector: ZipkinCollector) -> None:
    reporter = BatchReporter(HttpSender(collector.url), JsonV2Encoder(Endpoint('shop')),
                             flush_interval=60)
    tracer = Tracer(reporter, ConstSampler(True), B3MultiPropagator())
    with tracer.start_active_span('GET /orders/{id}', tags={
            'span.kind': 'server', 'http.method': 'GET', 'peer.ipv4': '10.1.2.3',
            'peer.port': 40000}) as scope:
        scope.span.set_tag('http.status_code', 200)
        with pytest.raises(ValueError):
            with tracer.start_active_span('db', tags={'span.kind': 'client',
                                                      'peer.service': 'postgres'}):
                raise ValueError('boom')
    assert reporter.flush(5.0)
    assert reporter.close(5.0)

    server, client = sorted(collector.spans(), key=lambda span: span.get('kind'))[::-1]
    assert server['kind'] == 'SERVER' and client['kind'] == 'CLIENT'
    assert client['parentId'] == server['id'] and client['traceId'] == server['traceId']
    assert server['remoteEndpoint'] == {'ipv4': '10.1.2.3', 'port': 40000}
    assert client['remoteEndpoint'] == {'serviceName': 'postgres'}
    assert server['tags'] == {'http.method': 'GET', 'http.status_code': '200'}
    assert client['tags']['error'] == 'true'
    (annotation,) = client['annotations']
    assert annotation['value'].startswith('event=error ')
    assert 'error.object=ValueError: boom' in annotation['value']
    assert server['localEndpoint'] == {'serviceName': 'shop'}
    assert collector.rejected_count == 0
