"""The OTLP protobuf encoder's server-span path gives the bytes of the merged tags.

As for Zipkin (``test_zipkin_server_span.py``, whose cases are reused): the wrapper's
``ServerSpan`` holds its standard tags as fields, and ``ProtobufEncoder`` writes them from
the fields and from bytes it shares between the requests of one shape. Each case runs a
real request through the wrapper, encodes the finished span (the fields' path), and
encodes the same span as a plain record with the merged tag dict (the general path): the
two must be the same bytes, field for field and in the same order.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from falcon_tracing_wsgi.export.otlp import ProtobufEncoder
from falcon_tracing_wsgi.tracer.span import ServerSpan
from tests import apps
from tests.export.test_zipkin_server_span import (
    CASES, _count_tag_reads, _falcon, _Hello, _Plain, _run, _same_shape_spans, _Tags,
)
from tests.harness import make_environ

_RESOURCE = {'service.name': 'svc', 'host.name': 'h'}


class _Record(_Plain):
    """The plain record, with the references the general path reads too."""

    def __init__(self, span: ServerSpan) -> None:
        super().__init__(span)
        self.references = span.references


def _encoder(limit: int = 64) -> ProtobufEncoder:
    return ProtobufEncoder(_RESOURCE, '1.0', max_value_length=limit)


#: Spans the Zipkin cases do not make: what only OTLP writes (tracestate, a 64-bit trace
#: id padded to 128) and values the fields' path hands to the general one.
MORE_CASES = [
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', HTTP_TRACEPARENT='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        HTTP_TRACESTATE='congo=t61rcWkgMzE')), id='w3c-parent-with-tracestate'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', HTTP_X_B3_TRACEID='a2fb4a1d1a96d312', HTTP_X_B3_SPANID='b7ad6b7169203331',
        HTTP_X_B3_SAMPLED='1')), id='64-bit-trace-id'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='10.0.0.1', REMOTE_PORT='-1')), id='negative-port'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='10.0.0.1', REMOTE_PORT='99999999999999999999999')),
        id='port-past-int64'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='10.0.0.1', REMOTE_PORT='0')), id='port-0'),
    pytest.param(lambda: _run(apps.status_app('404 Not Found')), id='4xx'),
    pytest.param(lambda: _run(apps.status_app('299 Custom')), id='unlisted-status'),
]


def _with(span: ServerSpan, **fields: Any) -> ServerSpan:
    changed = copy.copy(span)
    for name, value in fields.items():
        setattr(changed, name, value)
    return changed


#: Changes to one finished span that no request makes here, each on its own.
VARIANTS = [
    pytest.param({}, id='as-made'),
    pytest.param({'response_size': 3 * 1024 * 1024}, id='large-body'),
    pytest.param({'response_size': 1 << 70}, id='size-past-int64'),
    pytest.param({'url': 'http://h/' + '\u00e9' * 40}, id='non-ascii-url'),
    pytest.param({'url': 'http://h/\ud800'}, id='lone-surrogate-url'),
    pytest.param({'route_tags': {'http.method': 'POST'}}, id='route-tag-named-as-a-field'),
    pytest.param({'route_tags': {'span.kind': 'client'}}, id='route-tag-span-kind'),
    pytest.param({'route_tags': {'n': 1, 'f': 0.5, 'b': True}}, id='route-tags-not-text'),
    pytest.param({'status_code': 0}, id='no-status'),
    pytest.param({'dropped_attributes_count': 2, 'dropped_events_count': 1},
                 id='dropped-counts'),
]


@pytest.mark.parametrize('limit', [64, 16])
@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('make', [*[case.values[0] for case in CASES],
                                  *[case.values[0] for case in MORE_CASES]])
def test_the_fields_give_the_bytes_of_the_merged_tags(make, variant, limit):
    span = _with(make(), **variant)
    encoder = _encoder(limit)
    # twice: the second one takes the shape the first cached
    for _ in range(2):
        assert encoder.encode(span) == encoder.encode(_Record(span))


def test_the_usual_span_is_encoded_from_its_fields(monkeypatch):
    span = _run(_falcon(_Hello()))
    reads = _count_tag_reads(monkeypatch)
    encoded = _encoder().encode(span)
    assert not reads
    monkeypatch.undo()
    assert encoded == _encoder().encode(_Record(span))
    assert _count_tag_reads(monkeypatch) == []
    _encoder().encode(_run(_falcon(_Tags())))  # tags set through the API: the merged dict


def test_spans_of_one_shape_share_bytes_but_not_their_own_values():
    # One encoder for every span, each encoded twice in a different order: a shape's
    # cached bytes must never carry another request's URL, peer, size or ids.
    encoder = _encoder()
    spans = _same_shape_spans()
    for span in [*spans, *reversed(spans)]:
        assert encoder.encode(span) == encoder.encode(_Record(span))


def test_other_route_tags_for_the_same_shape_are_written():
    span = _run(_falcon(_Hello()))
    encoder = _encoder()
    first = encoder.encode(span)
    other = _with(span, route_tags={'falcon.resource': 'Other', 'falcon.responder': 'on_get'})
    assert b'Other' in encoder.encode(other) and b'Other' not in first
    assert encoder.encode(span) == first


@pytest.mark.parametrize('vary, cache', [
    pytest.param(lambda index: {'operation_name': f'GET /orders/{index}'}, '_server_shapes',
                 id='shapes'),
    pytest.param(lambda index: {'peer_address': f'10.{index // 250}.{index % 250}.1'},
                 '_peer_fields', id='peer-addresses'),
    # a new client port per connection, and sizes that differ per request
    pytest.param(lambda index: {'peer_port': 20000 + index}, '_port_fields', id='ports'),
    pytest.param(lambda index: {'response_size': 1 + index * 997}, '_size_fields',
                 id='response-sizes'),
])
def test_the_caches_are_bounded(vary, cache):
    # (White-box: the bounds are not observable through encode().)
    span = _run(apps.list_body)
    encoder = _encoder()
    for index in range(3000):
        varied = _with(span, **vary(index))
        assert encoder.encode(varied) == encoder.encode(_Record(varied))
    assert 0 < len(getattr(encoder, cache)) <= 1024
