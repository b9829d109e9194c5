"""``with_header_names``: every format injects under transformed names, and nothing else changes.

The renamed propagators are checked differentially against the originals, with the WSGI
environ key mapping that the middleware uses: for every format, the default composite and
a composite of all formats, injecting with ``p.with_header_names(environ_key)`` must give
exactly the original's headers under their environ keys.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Optional

import pytest

from falcon_tracing_wsgi._wsgi import EnvironHeaders, environ_key
from falcon_tracing_wsgi.propagation import (PROPAGATORS, CompositePropagator,
                                             JaegerPropagator, build_propagator)
from falcon_tracing_wsgi.propagation.xray import EXTRA_KEY
from falcon_tracing_wsgi.tracer.context import SpanContext

T32 = '0af7651916cd43dd8448eb211c80319c'
T16 = '8448eb211c80319c'
S1 = 'b7ad6b7169203331'
S2 = '00f067aa0ba902b7'
X_RAY_ROOT = '5759e988bd862e3fe1be46a994272793'

#: (id, propagator factory): every registered format, the default set and all of them.
FORMATS = [pytest.param(name, id=name) for name in sorted(PROPAGATORS)] + [
    pytest.param('b3,w3c,baggage', id='composite-default'),
    pytest.param(','.join(PROPAGATORS), id='composite-all'),
]

ESCAPED_BAGGAGE = {'plain': 'v', 'user_id': '42', 'needs escaping': 'skipped key',
                   'spaces': 'a b,c;d=e%f+g', 'unicode': 'caf\u00e9 \u2603', 'slash': '/p/q'}

CONTEXTS = [
    pytest.param(SpanContext(T32, S1, None, True), id='sampled-128-root'),
    pytest.param(SpanContext(T32, S1, S2, True), id='sampled-128-parent'),
    pytest.param(SpanContext(T16, S1, S2, True), id='sampled-64-parent'),
    pytest.param(SpanContext(T16, S1, None, False), id='unsampled-64-root'),
    pytest.param(SpanContext(T32, S1, S2, False), id='unsampled-128-parent'),
    pytest.param(SpanContext(T32, S1, S2, None), id='deferred-parent'),
    pytest.param(SpanContext(T16, S1, None, None), id='deferred-64-root'),
    pytest.param(SpanContext(T32, S1, S2, True, True), id='debug-parent'),
    pytest.param(SpanContext(T32, S1, None, True, False, None, 'rojo=00f067aa0ba902b7,c=1'),
                 id='tracestate'),
    pytest.param(SpanContext(T32, S1, S2, True, False, ESCAPED_BAGGAGE), id='baggage-escaping'),
    pytest.param(SpanContext(None, None, None, False), id='decision-only-unsampled'),
    pytest.param(SpanContext(None, None, None, True, True), id='decision-only-debug'),
    pytest.param(SpanContext(None, None, None, None, False, {'k': 'v w'}), id='baggage-only'),
    pytest.param(SpanContext(X_RAY_ROOT, S1, None, True, False, None, None,
                             {EXTRA_KEY: 'Lineage=a87bd80c:0,68fd508a:5;Foo=bar'}),
                 id='xray-extra'),
    pytest.param(SpanContext(None, None, None, False, False, None, None,
                             {EXTRA_KEY: 'Lineage=a87bd80c:0'}), id='xray-extra-decision-only'),
]


def _inject(propagator: object, context: SpanContext) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagator.inject(context, carrier)  # type: ignore[attr-defined]
    return carrier


@pytest.mark.parametrize('context', CONTEXTS)
@pytest.mark.parametrize('names', FORMATS)
def test_renamed_inject_writes_the_same_headers_under_environ_keys(names, context):
    propagator = build_propagator(names)
    expected = {environ_key(k): v for k, v in _inject(propagator, context).items()}
    assert _inject(propagator.with_header_names(environ_key), context) == expected


@pytest.mark.parametrize('context', CONTEXTS)
def test_every_context_writes_something_in_some_format(context):
    # Keeps the differential test above from passing on empty carriers alone.
    renamed = build_propagator(list(PROPAGATORS)).with_header_names(environ_key)
    carrier = _inject(renamed, context)
    assert carrier
    assert all(key.startswith('HTTP_') and key == key.upper() for key in carrier)


CARRIERS = [
    pytest.param({}, id='empty'),
    pytest.param({'x-b3-traceid': T32, 'x-b3-spanid': S1, 'x-b3-parentspanid': S2,
                  'x-b3-sampled': '1'}, id='b3-multi'),
    pytest.param({'b3': f'{T16}-{S1}-d'}, id='b3-single'),
    pytest.param({'b3': '0'}, id='b3-decision'),
    pytest.param({'traceparent': f'00-{T32}-{S1}-01', 'tracestate': 'rojo=1,c=2'}, id='w3c'),
    pytest.param({'baggage': 'a=1,b=caf%C3%A9'}, id='baggage'),
    pytest.param({'uber-trace-id': f'{T16}:{S1}:0:1', 'uberctx-user-id': '42'}, id='jaeger'),
    pytest.param({'x-amzn-trace-id': 'Root=1-5759e988-bd862e3fe1be46a994272793;'
                                     f'Parent={S1};Sampled=1;Lineage=a87bd80c:0'}, id='xray'),
    pytest.param({'x-b3-traceid': 'garbage', 'x-b3-spanid': S1, 'traceparent': 'junk'},
                 id='invalid'),
]


@pytest.mark.parametrize('carrier', CARRIERS)
@pytest.mark.parametrize('names', FORMATS)
def test_renamed_extract_equals_the_original(names, carrier):
    propagator = build_propagator(names)
    assert propagator.with_header_names(environ_key).extract(carrier) == \
        propagator.extract(carrier)


@pytest.mark.parametrize('names', FORMATS)
def test_returns_a_new_propagator_of_the_same_class_and_leaves_the_original_alone(names):
    propagator = build_propagator(names)
    context = SpanContext(T32, S1, S2, True, False, {'k': 'v'}, 'rojo=1')
    before = _inject(propagator, context)

    renamed = propagator.with_header_names(environ_key)

    assert type(renamed) is type(propagator)
    assert renamed is not propagator
    assert renamed.fields == propagator.fields
    assert getattr(renamed, 'reads_only_fields', None) == \
        getattr(propagator, 'reads_only_fields', None)
    assert _inject(propagator, context) == before
    assert _inject(build_propagator(names), context) == before
    if isinstance(propagator, CompositePropagator):
        assert isinstance(renamed, CompositePropagator)
        assert [type(p) for p in renamed.propagators] == \
            [type(p) for p in propagator.propagators]
        assert all(r is not p for r, p in zip(renamed.propagators, propagator.propagators))


#: What the default-constructed formats write for a sampled child span with baggage.
CANONICAL = [
    pytest.param('b3', {'X-B3-TraceId', 'X-B3-SpanId', 'X-B3-ParentSpanId', 'X-B3-Sampled'},
                 id='b3'),
    pytest.param('b3single', {'b3'}, id='b3single'),
    pytest.param('w3c', {'traceparent', 'tracestate'}, id='w3c'),
    pytest.param('baggage', {'baggage'}, id='baggage'),
    pytest.param('jaeger', {'uber-trace-id', 'uberctx-k'}, id='jaeger'),
    pytest.param('xray', {'X-Amzn-Trace-Id'}, id='xray'),
]


@pytest.mark.parametrize('name, headers', CANONICAL)
def test_the_registry_factories_keep_the_canonical_names(name, headers):
    context = SpanContext(T32, S1, S2, True, False, {'k': 'v'}, 'rojo=1')
    assert set(_inject(PROPAGATORS[name](), context)) == headers


class _Recorder:
    """A name function that records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, name: str) -> str:
        self.calls.append(name)
        return 'renamed:' + name


STATIC_NAMES = [
    pytest.param('b3', ['X-B3-TraceId', 'X-B3-SpanId', 'X-B3-ParentSpanId', 'X-B3-Flags',
                        'X-B3-Sampled'], id='b3'),
    pytest.param('b3single', ['b3'], id='b3single'),
    pytest.param('w3c', ['traceparent', 'tracestate'], id='w3c'),
    pytest.param('baggage', ['baggage'], id='baggage'),
    pytest.param('jaeger', ['uber-trace-id'], id='jaeger'),
    pytest.param('xray', ['X-Amzn-Trace-Id'], id='xray'),
]


@pytest.mark.parametrize('name, static', STATIC_NAMES)
def test_static_names_are_resolved_once_not_per_inject(name, static):
    recorder = _Recorder()
    renamed = PROPAGATORS[name]().with_header_names(recorder)
    assert sorted(recorder.calls) == sorted(static)
    recorder.calls.clear()
    for _ in range(3):
        carrier = _inject(renamed, SpanContext(T32, S1, S2, True, False, {'k': 'v'}, 'rojo=1'))
        assert carrier and all(key.startswith('renamed:') for key in carrier)
    # Only Jaeger's per-item baggage names are made at inject time.
    assert [call for call in recorder.calls if call != 'uberctx-k'] == []


def test_jaeger_baggage_names_are_made_per_item():
    recorder = _Recorder()
    renamed = JaegerPropagator().with_header_names(recorder)
    recorder.calls.clear()
    carrier = _inject(renamed, SpanContext(T32, S1, None, True, False,
                                           {'a': '1', 'b_c': '2', 'bad key': '3'}))
    assert recorder.calls == ['uberctx-a', 'uberctx-b_c']
    assert carrier == {'renamed:uber-trace-id': f'{T32}:{S1}:0:01',
                       'renamed:uberctx-a': '1', 'renamed:uberctx-b_c': '2'}


def test_renaming_a_renamed_propagator_starts_from_the_canonical_names():
    twice = build_propagator('b3single,w3c').with_header_names(environ_key) \
        .with_header_names(str.upper)
    assert _inject(twice, SpanContext(T32, S1, None, True)) == {
        'B3': f'{T32}-{S1}-1', 'TRACEPARENT': f'00-{T32}-{S1}-01'}


class _Foreign:
    """A format from elsewhere, without ``with_header_names``."""

    fields: tuple[str, ...] = ('x-foreign',)

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        return None

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        carrier['X-Foreign'] = '1'


def test_composite_with_a_format_that_cannot_rename_raises_type_error():
    composite = CompositePropagator([PROPAGATORS['b3'](), _Foreign()])
    with pytest.raises(TypeError, match='_Foreign cannot write its headers'):
        composite.with_header_names(environ_key)


@pytest.mark.parametrize('context', CONTEXTS)
def test_injected_into_an_environ_reads_back_like_the_original_headers(context):
    # What the middleware will do: write into the environ, let the next hop read it.
    propagator = build_propagator(list(PROPAGATORS))
    environ: dict[str, str] = {'REQUEST_METHOD': 'GET'}
    propagator.with_header_names(environ_key).inject(context, environ)
    lower = {k.lower(): v for k, v in _inject(propagator, context).items()}
    assert propagator.extract(EnvironHeaders(environ)) == propagator.extract(lower)
