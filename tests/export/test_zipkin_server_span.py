"""The Zipkin encoder's server-span path gives the JSON of the span's merged tags.

The WSGI wrapper's server span (``ServerSpan``) holds its standard tags as fields, and
``JsonV2Encoder`` writes them from the fields without merging them into a dict. Each case
runs a real request through the wrapper with this package's tracer, encodes the finished
span (the fields' path), then reads ``span.tags`` (which merges them) and encodes it again
(the general path): the two must be the same JSON object.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import falcon
import pytest

from falcon_tracing_wsgi import TracingMiddleware
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
from falcon_tracing_wsgi.propagation import build_propagator
from falcon_tracing_wsgi.tracer import ConstSampler, Tracer
from falcon_tracing_wsgi.tracer.limits import SpanLimits
from falcon_tracing_wsgi.tracer.span import ServerSpan
from tests import apps
from tests.harness import call, make_environ
from tests.tracer.fakes import RecordingReporter


class _Tags:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        span = req.context.span
        span.set_tag('user.id', 42).set_tag('cache', 'hit').set_tag('ratio', 0.5)
        span.set_tag('flag', False).set_tag('none', None).set_tag('\u00e9t\u00e9', 'caf\u00e9')
        span.log_kv({'event': 'looked up', 'rows': 3})
        resp.media = {'ok': True}


class _Overrides:
    """Tags with the fields' names: the merged dict must be encoded instead."""

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        req.context.span.set_tag(self.name, self.value)
        resp.media = {}


class _Fails:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        raise RuntimeError('boom at http://h/p?token=secret')


class _Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {'item': item_id}  # sets no tag: its span's shape is cached


class _ClassTag:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        req.context.span.set_tag('falcon.resource', 'mine')
        resp.media = {}


def _falcon(resource: Any) -> Callable[..., Any]:
    app = falcon.App()
    app.add_route('/items/{item_id}', resource)
    return app


def _run(app: Any, *, environ: dict[str, Any] | None = None, limits: SpanLimits | None = None,
         iterate: bool = True) -> ServerSpan:
    reporter = RecordingReporter()
    tracer = Tracer(reporter, ConstSampler(True), build_propagator(('b3',)),
                    span_limits=limits or SpanLimits())
    call(TracingMiddleware(app, tracer), environ or make_environ('/items/7', query='q=1'),
         iterate=iterate)
    (span,) = reporter.spans
    assert type(span) is ServerSpan
    return span


#: (make the span, whether its tags set through the API have names of their own)
CASES = [
    pytest.param(lambda: _run(_falcon(_Tags())), True, id='falcon-route-app-tags-and-log'),
    pytest.param(lambda: _run(apps.list_body), True, id='plain-wsgi-no-route'),
    pytest.param(lambda: _run(apps.status_app('503 Service Unavailable')), True, id='5xx'),
    pytest.param(lambda: _run(_falcon(_Fails())), True, id='exception'),
    pytest.param(lambda: _run(apps.generator_body, iterate=False), True, id='aborted'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='2001:db8::1', REMOTE_PORT='443')), True, id='ipv6-peer'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='not-an-ip', REMOTE_PORT='70000')), True, id='invalid-peer'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='', REMOTE_PORT='')), True, id='no-peer'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', REMOTE_ADDR='', REMOTE_PORT='8080')), True, id='port-only'),
    pytest.param(lambda: _run(apps.list_body, environ=make_environ(
        '/p', method='PR\u00d6PFIND', query='x=' + 'y' * 300)), True, id='odd-method-long-url'),
    pytest.param(lambda: _run(_falcon(_Tags()), limits=SpanLimits(attribute_count=3)), True,
                 id='dropped-tags'),
    pytest.param(lambda: _run(_falcon(_ClassTag())), True, id='app-sets-a-route-tag'),
    *[pytest.param(lambda name=name, value=value: _run(_falcon(_Overrides(name, value))),
                   False, id=f'app-sets-{name}')
      for name, value in (('http.url', 'overridden'), ('span.kind', 'client'),
                          ('peer.service', 'db'), ('error', False),
                          ('http.status_code', 299))],
]


class _Plain:
    """The same finished span as a plain record with one tag dict (the Span contract)."""

    def __init__(self, span: ServerSpan) -> None:
        self.context = span.context
        self.operation_name = span.operation_name
        self.start_time = span.start_time
        self.duration = span.duration
        self.tags = span.tags  # the fields merged with the span's own tags
        self.logs = span.logs
        self.dropped_attributes_count = span.dropped_attributes_count
        self.dropped_events_count = span.dropped_events_count


@pytest.mark.parametrize('process_tags, apart', [
    pytest.param({}, True, id='no-process-tags'),
    pytest.param({'deployment': 'blue'}, True, id='process-tags'),
    pytest.param({'component': 'mine', 'cache': 'process'}, False,
                 id='process-tags-sharing-names'),
])
@pytest.mark.parametrize('make, own_names', CASES)
def test_the_fields_give_the_json_of_the_merged_tags(monkeypatch, make, own_names,
                                                     process_tags, apart):
    span = make()
    encoder = JsonV2Encoder(Endpoint('svc', ipv4='10.0.0.1'), max_value_length=64,
                            process_tags=process_tags)
    reads = _count_tag_reads(monkeypatch)
    from_fields = encoder.encode(span)
    # The fields' own path (the merged tags never read), unless a tag set through the
    # API or a process tag shares a field's name.
    assert (not reads) is (apart and own_names)
    monkeypatch.undo()
    assert json.loads(from_fields) == json.loads(encoder.encode(_Plain(span)))


def _count_tag_reads(monkeypatch) -> list[int]:
    reads: list[int] = []
    merged = ServerSpan.tags
    monkeypatch.setattr(ServerSpan, 'tags', property(
        lambda span: reads.append(1) or merged.fget(span), merged.fset))
    return reads


def test_the_usual_span_is_encoded_from_its_fields(monkeypatch):
    span = _run(_falcon(_Tags()))
    reads = _count_tag_reads(monkeypatch)
    encoded = json.loads(JsonV2Encoder(Endpoint('svc')).encode(span))
    assert not reads
    assert encoded['kind'] == 'SERVER' and encoded['name'] == 'GET /items/{item_id}'
    assert encoded['remoteEndpoint'] == {'ipv4': '10.1.2.3', 'port': 50123}
    assert encoded['tags'] == {
        'component': 'falcon', 'http.method': 'GET',
        'http.url': 'http://127.0.0.1/items/7?q=1', 'http.status_code': '200',
        'http.response_size': '12', 'http.route': '/items/{item_id}',
        'falcon.resource': '_Tags', 'falcon.responder': 'on_get',
        'user.id': '42', 'cache': 'hit', 'ratio': '0.5', 'flag': 'false', 'none': 'None',
        '\u00e9t\u00e9': 'caf\u00e9'}


def test_reading_the_tags_never_changes_the_span():
    span = _run(_falcon(_Tags()))
    first = span.tags
    first['http.url'] = 'changed by a reader'
    assert span.tags['http.url'] == 'http://127.0.0.1/items/7?q=1' and not span.merged
    assert span.tags == {**first, 'http.url': 'http://127.0.0.1/items/7?q=1'}


def test_assigning_the_tags_replaces_them_all():
    span = _run(_falcon(_Tags()))
    span.tags = {'only': 'this'}
    assert span.merged and span.tags == {'only': 'this'}
    assert json.loads(JsonV2Encoder(Endpoint('svc')).encode(span))['tags'] == {'only': 'this'}


def _same_shape_spans() -> list[ServerSpan]:
    """Spans that share their shape with others, and spans that differ by one part."""
    routed = _falcon(_Hello())
    spans = [_run(routed, environ=make_environ(f'/items/{index}', query=f'n={index}',
                                               REMOTE_ADDR=f'10.0.0.{index + 1}',
                                               REMOTE_PORT=str(40000 + index)))
             for index in range(3)]
    spans += [_run(apps.list_body, environ=make_environ(f'/p/{index}'))
              for index in range(3)]
    # One peer address with other ports (a valid one, none, one out of range), and
    # peers that are not valid IPv4: each writes its own remoteEndpoint or tags.
    spans += [_run(apps.list_body, environ=make_environ('/p', REMOTE_ADDR=address,
                                                        REMOTE_PORT=port))
              for address, port in (('10.0.0.1', '40000'), ('10.0.0.1', '41000'),
                                    ('10.0.0.1', ''), ('10.0.0.1', '70000'),
                                    ('2001:db8::1', '443'), ('2001:db8::1', '0'),
                                    ('not-an-ip', '443'), ('10.0.0.256', '443'))]
    spans += [_run(apps.status_app('503 Service Unavailable')),
              _run(apps.status_app('404 Not Found')),
              _run(apps.generator_body, iterate=False),
              _run(_falcon(_Tags()))]  # tags set through the API: never cached
    return spans


@pytest.mark.parametrize('process_tags', [{}, {'deployment': 'blue'}])
def test_spans_of_one_shape_share_text_but_not_their_own_values(process_tags):
    # One encoder for every span, each span encoded twice in a different order: a
    # shape's cached text must never carry another request's URL, peer, size, ids.
    encoder = JsonV2Encoder(Endpoint('svc', ipv4='10.0.0.1'), max_value_length=64,
                            process_tags=process_tags)
    spans = _same_shape_spans()
    for span in [*spans, *reversed(spans)]:
        assert json.loads(encoder.encode(span)) == json.loads(encoder.encode(_Plain(span)))


def test_other_route_tags_for_the_same_shape_are_written():
    import copy
    span = _run(_falcon(_Hello()))
    encoder = JsonV2Encoder(Endpoint('svc'))
    assert json.loads(encoder.encode(span))['tags']['falcon.resource'] == '_Hello'
    other = copy.copy(span)
    other.route_tags = {'falcon.resource': 'Other', 'falcon.responder': 'on_get'}
    assert json.loads(encoder.encode(other))['tags']['falcon.resource'] == 'Other'
    assert json.loads(encoder.encode(span))['tags']['falcon.resource'] == '_Hello'


def _named(index: int) -> dict[str, Any]:
    return {'operation_name': f'GET /orders/{index}'}


def _from_peer(index: int) -> dict[str, Any]:
    return {'peer_address': f'10.{index // 250}.{index % 250}.1'}


@pytest.mark.parametrize('vary, cache', [
    # Names an app sets through the API can take any value.
    pytest.param(_named, '_server_shapes', id='shapes'),
    # A server that sees many clients.
    pytest.param(_from_peer, '_peer_prefixes', id='peer-addresses'),
])
def test_the_caches_are_bounded(vary, cache):
    # (White-box: the bounds are not observable through encode().)
    import copy
    span = _run(apps.list_body)
    encoder = JsonV2Encoder(Endpoint('svc'))
    for index in range(3000):
        varied = copy.copy(span)
        fields = vary(index)
        for name, value in fields.items():
            setattr(varied, name, value)
        encoded = json.loads(encoder.encode(varied))
        assert encoded['name'] == varied.operation_name
        assert encoded['remoteEndpoint'] == {'ipv4': varied.peer_address, 'port': 50123}
    assert 0 < len(getattr(encoder, cache)) <= 1024


class _BadIds:
    """An id generator of someone else's that gives ids Zipkin would refuse."""

    def trace_id(self) -> str:
        return 'NOT-HEX-' * 4

    def span_id(self) -> str:
        return '"},{"x":1' + ' ' * 7


@pytest.mark.parametrize('environ', [
    pytest.param(make_environ('/items/7'), id='new-trace'),
    pytest.param(make_environ('/items/7', HTTP_X_B3_TRACEID='463ac35c9f6413ad48485a3953bb6124',
                              HTTP_X_B3_SPANID='a2fb4a1d1a96d312', HTTP_X_B3_SAMPLED='1'),
                 id='child-of-the-caller'),
])
def test_the_server_span_s_ids_are_valid_whatever_the_id_generator_gives(environ):
    # The encoder writes a server span's ids unchecked: the tracer guarantees them.
    reporter = RecordingReporter()
    tracer = Tracer(reporter, ConstSampler(True), build_propagator(('b3',)),
                    id_generator=_BadIds())
    # a new trace draws two ids, a child one (the wrapper adds headers to the environ)
    drawn = 1 if 'HTTP_X_B3_TRACEID' in environ else 2
    call(TracingMiddleware(_falcon(_Hello()), tracer), environ)
    (span,) = reporter.spans
    assert type(span) is ServerSpan
    encoded = json.loads(JsonV2Encoder(Endpoint('svc')).encode(span))
    assert re.fullmatch(r'[0-9a-f]{32}', encoded['traceId'])
    assert re.fullmatch(r'[0-9a-f]{16}', encoded['id'])
    assert tracer.id_generator.replaced_ids == drawn


def test_a_span_with_tags_of_its_own_never_takes_a_cached_shape():
    import copy
    span = _run(_falcon(_Hello()))
    encoder = JsonV2Encoder(Endpoint('svc'))
    encoder.encode(span)  # its shape is cached now
    tagged = copy.copy(span)
    tagged._tags = {'user.id': 7}  # as if the app had set it (same route tags dict)
    assert json.loads(encoder.encode(tagged))['tags']['user.id'] == '7'
    assert 'user.id' not in json.loads(encoder.encode(span))['tags']
