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
    CASES, _count_tag_reads, _falcon, _Fails, _Hello, _Overrides, _Plain, _run,
    _same_shape_spans, _Tags,
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


# -- OpenTelemetry's stable names: StableServerSpan --------------------------------------

def _run_stable(app: Any, *, environ: dict[str, Any] | None = None, iterate: bool = True,
                fields: bool = True, **options: Any) -> Any:
    """The finished server span of one request with the stable names; ``fields=False``
    takes the tag-dict path the wrapper used before StableServerSpan (for comparison)."""
    from falcon_tracing_wsgi import TracingMiddleware
    from falcon_tracing_wsgi.propagation import build_propagator
    from falcon_tracing_wsgi.tracer import ConstSampler, Tracer
    from tests.harness import call
    from tests.tracer.fakes import RecordingReporter
    reporter = RecordingReporter()
    tracer = Tracer(reporter, ConstSampler(True), build_propagator(('w3c',)))
    middleware = TracingMiddleware(app, tracer, http_semconv='stable',
                                   attribute_value_length_limit=64, **options)
    middleware._stable_fields = fields  # read when the first request binds the tracer
    call(middleware, environ or make_environ('/items/7', query='q=1'), iterate=iterate)
    (span,) = reporter.spans
    return span


class _Hook:
    def __call__(self, span: Any, environ: Any) -> None:
        span.set_tag('hooked', True)


#: (app, environ, middleware options): the stable names' request shapes.
STABLE_CASES = [
    pytest.param(lambda: (_falcon(_Hello()), None, {}), id='falcon-route'),
    pytest.param(lambda: (_falcon(_Tags()), None, {}), id='app-tags-and-log'),
    pytest.param(lambda: (apps.list_body, make_environ(
        '/p', query='token=secret&x=1'), {'redact_query': ('token',)}), id='redacted-query'),
    pytest.param(lambda: (apps.list_body, make_environ('/p', query='q=1'),
                          {'record_query': False}), id='query-not-recorded'),
    pytest.param(lambda: (_falcon(_Hello()), make_environ('/items/7', method='PURGE'), {}),
                 id='unknown-method'),
    pytest.param(lambda: (apps.list_body, make_environ('/p', method='PR\u00d6PFIND' * 20), {}),
                 id='long-unknown-method'),
    pytest.param(lambda: (apps.list_body, {
        k: v for k, v in make_environ('/p', **{'wsgi.url_scheme': 'https'}).items()
        if k != 'HTTP_HOST'}, {}), id='no-host-https'),
    pytest.param(lambda: (apps.list_body, make_environ(
        '/p', HTTP_HOST='[2001:db8::1]:8443', REMOTE_ADDR='2001:db8::2', REMOTE_PORT='443',
        HTTP_X_FORWARDED_FOR='203.0.113.9, 10.0.0.1'), {}), id='ipv6-forwarded'),
    pytest.param(lambda: (apps.list_body, make_environ(
        '/p', REMOTE_ADDR='', REMOTE_PORT='', SERVER_PROTOCOL='HTTP/2'), {}), id='no-peer'),
    pytest.param(lambda: (apps.list_body, make_environ(
        '/p', REMOTE_PORT='-1', SERVER_PROTOCOL='SPDY/3',
        HTTP_USER_AGENT='agent/' + 'x' * 100, HTTP_HOST='h' * 100 + ':99999'), {}),
        id='odd-values'),
    pytest.param(lambda: (apps.status_app('503 Service Unavailable'), None, {}), id='5xx'),
    pytest.param(lambda: (apps.status_app('404 Not Found'), None, {}), id='4xx'),
    pytest.param(lambda: (apps.generator_body, None, {}), id='aborted'),
    pytest.param(lambda: (_falcon(_Hello()), make_environ(
        '/items/7', headers={'X-Request-Id': 'r' * 100, 'Authorization': 'secret'}),
        {'capture_request_headers': ('x-request-id', 'authorization')}),
        id='captured-headers'),
    pytest.param(lambda: (_falcon(_Hello()), None, {'request_hook': _Hook()}),
                 id='request-hook'),
    pytest.param(lambda: (_falcon(_Fails()), None, {}), id='exception'),
    # tags set through the API with a field's name: where and which value wins
    *[pytest.param(lambda name=name, value=value: (_falcon(_Overrides(name, value)), None, {}),
                   id=f'app-sets-{name}')
      for name, value in (('url.path', '/mine'), ('span.kind', 'client'),
                          ('http.response.status_code', 299), ('error.type', 'Mine'),
                          ('http.route', '/mine'), ('falcon.resource', 'Mine'),
                          ('client.address', '192.0.2.1'))],
]


@pytest.mark.parametrize('case', STABLE_CASES)
def test_the_stable_fields_give_the_tags_of_the_tag_dict_path(case):
    from falcon_tracing_wsgi.tracer.span import Span, StableServerSpan
    app, environ, options = case()
    iterate = app is not apps.generator_body
    spans = [_run_stable(app, environ=copy.deepcopy(environ) if environ else None,
                         iterate=iterate, fields=fields, **options)
             for fields in (True, False)]
    assert [type(span) for span in spans] == [StableServerSpan, Span]
    fields, plain = spans
    # the same tags in the same order, and the same name
    assert list(fields.tags.items()) == list(plain.tags.items())
    assert fields.operation_name == plain.operation_name
    assert [fields for _, fields in fields.logs or ()] == \
        [fields for _, fields in plain.logs or ()]  # (their times differ)


@pytest.mark.parametrize('variant', VARIANTS[:1] + VARIANTS[2:-1] + [
    pytest.param({'error_type': 'TimeoutError'}, id='error-type'),
    pytest.param({'route_tags': {'url.path': '/x'}}, id='route-tag-named-as-a-field'),
    pytest.param({'server_port': -1}, id='negative-server-port'),
    pytest.param({'dropped_attributes_count': 2}, id='dropped-counts'),
])
@pytest.mark.parametrize('case', STABLE_CASES)
def test_the_stable_fields_give_the_bytes_of_the_merged_tags(case, variant):
    app, environ, options = case()
    span = _run_stable(app, environ=environ, iterate=app is not apps.generator_body,
                       **options)
    span = _with(span, **{('path' if name == 'url' else name): value
                          for name, value in variant.items()})
    encoder = _encoder()
    for _ in range(2):  # the second one takes the shape the first cached
        assert encoder.encode(span) == encoder.encode(_Record(span))


def test_the_usual_stable_span_is_encoded_from_its_fields(monkeypatch):
    from falcon_tracing_wsgi.tracer.span import StableServerSpan
    span = _run_stable(_falcon(_Hello()))
    reads: list[int] = []
    merged = StableServerSpan.tags
    monkeypatch.setattr(StableServerSpan, 'tags', property(
        lambda span: reads.append(1) or merged.fget(span), merged.fset))
    encoded = _encoder().encode(span)
    assert not reads
    monkeypatch.undo()
    assert encoded == _encoder().encode(_Record(span))


def test_stable_spans_of_one_shape_share_bytes_but_not_their_own_values():
    encoder = _encoder()
    spans = [_run_stable(_falcon(_Hello()), environ=make_environ(
        f'/items/{index}', query=f'n={index}', REMOTE_ADDR=f'10.0.0.{index + 1}',
        REMOTE_PORT=str(40000 + index), HTTP_USER_AGENT=f'agent/{index % 2}'))
        for index in range(4)]
    spans += [_run_stable(apps.list_body, environ=make_environ(f'/p/{index}', method=method))
              for index, method in enumerate(('GET', 'PURGE', 'PATCH', 'PURGE'))]
    for span in [*spans, *reversed(spans)]:
        assert encoder.encode(span) == encoder.encode(_Record(span))


def test_an_unknown_method_is_never_a_cache_key():
    # the client picks it: a shape per method would let clients fill the cache
    encoder = _encoder()
    for index in range(50):
        span = _run_stable(apps.list_body, environ=make_environ('/p', method=f'X{index}'))
        assert encoder.encode(span) == encoder.encode(_Record(span))
    assert len(encoder._server_shapes) == 0


@pytest.mark.parametrize('name, cache', [
    ('user_agent', '_client_groups'), ('client_address', '_client_groups'),
    ('server_address', '_server_groups'), ('peer_address', '_server_groups'),
    ('peer_port', '_stable_ports')])
def test_the_stable_value_caches_are_bounded(name, cache):
    span = _run_stable(apps.list_body)
    encoder = _encoder()
    for index in range(3000):
        varied = _with(span, **{name: 20000 + index if name == 'peer_port'
                                else f'value-{index}'})
        assert encoder.encode(varied) == encoder.encode(_Record(varied))
    assert 0 < len(getattr(encoder, cache)) <= 1024


def test_a_group_of_values_is_its_own_cache_entry():
    # the host, peer and client groups hold values of the same types in places that
    # differ: equal tuples from two groups must not share bytes
    encoder = _encoder()
    first = _with(_run_stable(apps.list_body), server_address='a', server_port=None,
                  peer_address='b', client_address='a', protocol_version=None,
                  user_agent='b')
    assert encoder.encode(first) == encoder.encode(_Record(first))


@pytest.mark.parametrize('fields', [True, False], ids=['fields', 'tag-dict'])
def test_what_a_client_sends_is_cut_to_the_value_length_limit(fields):
    # Written past Span.set_tag, so the wrapper cuts them (the limit is 64 here); with
    # the stable names they used to be written whole.
    long = 'x' * 200
    span = _run_stable(apps.list_body, fields=fields, environ=make_environ(
        '/' + long, method='M' * 200, query='q=' + long, HTTP_HOST=long,
        HTTP_USER_AGENT=long, HTTP_X_FORWARDED_FOR=long[:60], HTTP_X_REQUEST_ID=long),
        capture_request_headers=('x-request-id',))
    tags = span.tags
    for key in ('url.path', 'url.query', 'server.address', 'user_agent.original',
                'http.request.method_original', 'http.request.header.x-request-id'):
        assert len(tags[key]) == 64, key
    assert tags['client.address'] == long[:60]
