"""The OTLP encoders: what they write, decoded by the official opentelemetry-proto messages.

Every case runs through both encoders (protobuf and JSON); each body is decoded with
``opentelemetry-proto`` (see ``tests/otlp.py``), checked against one expectation, and the
two decodings must be the same message.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

import pytest

# The OTLP tests decode with the official messages (the [tests] extra installs them).
pytest.importorskip('opentelemetry.proto')
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st
from opentracing import Reference, ReferenceType

from falcon_tracing_wsgi.export.otlp import JsonEncoder, ProtobufEncoder
from falcon_tracing_wsgi.tracer.context import SpanContext

from tests.otlp import decode, summary
from tests.spans import PARENT_ID, T0, TRACE_ID, FakeSpan

SPAN_ID = '352bff9a74ca9ad2'
RESOURCE = {'service.name': 'backend', 'telemetry.sdk.name': 'falcon_tracing_wsgi',
            'telemetry.sdk.language': 'python', 'telemetry.sdk.version': '9.9.9',
            'host.name': 'box-1'}
ENCODERS = [pytest.param(ProtobufEncoder, id='protobuf'), pytest.param(JsonEncoder, id='json')]

SERVER = PbSpan.SPAN_KIND_SERVER
CLIENT = PbSpan.SPAN_KIND_CLIENT
INTERNAL = PbSpan.SPAN_KIND_INTERNAL
UNSET, OK, ERROR = 0, 1, 2


def _both(span: Any, **options: Any) -> list[Any]:
    """The span encoded by each encoder, framed, decoded; asserts the two agree."""
    decoded = []
    for cls in (ProtobufEncoder, JsonEncoder):
        encoder = cls(RESOURCE, '9.9.9', **options)
        piece = encoder.encode(span)
        assert piece is not None
        request = decode(encoder.frame([piece]), encoder.content_type)
        decoded.append(request)
    assert decoded[0] == decoded[1]
    return decoded


def _one(span: Any, **options: Any) -> dict[str, Any]:
    request = _both(span, **options)[0]
    (resource_spans,) = request.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    (decoded,) = scope_spans.spans
    return summary(decoded)


def _span(tags: Optional[dict[str, Any]] = None, **kwargs: Any) -> FakeSpan:
    return FakeSpan(tags=tags, **kwargs)


def _ctx(span_id: str = SPAN_ID, trace_id: str = TRACE_ID, parent_id: Optional[str] = PARENT_ID,
         tracestate: Optional[str] = None) -> SpanContext:
    return SpanContext(trace_id, span_id, parent_id, True, tracestate=tracestate)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError('no')


class Boom(Exception):
    pass


def _raised() -> Boom:
    try:
        raise Boom('it broke')
    except Boom as exc:
        return exc


def test_a_server_span_field_by_field() -> None:
    span = _span({'span.kind': 'server', 'component': 'falcon', 'http.method': 'GET',
                  'http.status_code': 200, 'peer.port': 54321, 'http.aborted': False,
                  'ratio': 0.25, 'negative': -3},
                 operation_name='GET /users/{id}', duration=0.0015)
    assert _one(span) == {
        'trace_id': TRACE_ID, 'span_id': SPAN_ID, 'parent_span_id': PARENT_ID,
        'trace_state': '', 'name': 'GET /users/{id}', 'kind': SERVER,
        'start': 1_700_000_000_000_000_000, 'end': 1_700_000_000_001_500_000,
        'attributes': {'component': ('string_value', 'falcon'),
                       'http.method': ('string_value', 'GET'),
                       'http.status_code': ('int_value', 200),
                       'peer.port': ('int_value', 54321),
                       'http.aborted': ('bool_value', False),
                       'ratio': ('double_value', 0.25),
                       'negative': ('int_value', -3)},
        'events': [], 'links': [], 'status': (UNSET, ''), 'flags': 1,
    }


def test_the_resource_and_the_scope() -> None:
    pids = iter([100, 100, 200])
    encoder = ProtobufEncoder(RESOURCE, '9.9.9', process_id=lambda: next(pids))
    json_pids = iter([100, 100, 200])
    json_encoder = JsonEncoder(RESOURCE, '9.9.9', process_id=lambda: next(json_pids))
    for enc in (encoder, json_encoder):
        piece = enc.encode(_span())
        first = decode(enc.frame([piece]), enc.content_type)
        (resource_spans,) = first.resource_spans
        resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
        assert {key: value.string_value for key, value in resource.items()
                if key != 'process.pid'} == RESOURCE
        assert resource['process.pid'].int_value == 100
        (scope_spans,) = resource_spans.scope_spans
        assert (scope_spans.scope.name, scope_spans.scope.version) == \
            ('falcon_tracing_wsgi', '9.9.9')
        # A forked child (another pid) writes its own process.pid from the next batch on.
        second = decode(enc.frame([piece, piece]), enc.content_type)
        pid = {kv.key: kv.value for kv in second.resource_spans[0].resource.attributes}
        assert pid['process.pid'].int_value == 200
        assert len(second.resource_spans[0].scope_spans[0].spans) == 2


@pytest.mark.parametrize('cls', ENCODERS)
def test_a_batch_keeps_every_span_in_order(cls: Any) -> None:
    encoder = cls(RESOURCE, '1')
    spans = [FakeSpan(_ctx(f'{i + 1:016x}'), operation_name=f'op-{i}',
                      tags={'i': i, 'pad': 'x' * (i * 40)}) for i in range(60)]
    request = decode(encoder.frame([encoder.encode(span) for span in spans]),
                     encoder.content_type)
    decoded = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in decoded] == [f'op-{i}' for i in range(60)]
    assert [s.attributes[0].value.int_value for s in decoded] == list(range(60))


@pytest.mark.parametrize('context, trace_id, parent', [
    pytest.param(_ctx(trace_id='a3ce929d0e0e4736'), '0000000000000000a3ce929d0e0e4736',
                 PARENT_ID, id='64-bit-trace-id-padded-to-16-bytes'),
    pytest.param(_ctx(parent_id=None), TRACE_ID, '', id='root-span-no-parent'),
])
def test_ids(context: SpanContext, trace_id: str, parent: str) -> None:
    decoded = _one(FakeSpan(context))
    assert (decoded['trace_id'], decoded['parent_span_id']) == (trace_id, parent)


def test_the_w3c_tracestate_is_trace_state() -> None:
    decoded = _one(FakeSpan(_ctx(tracestate='congo=t61rcWkgMzE,rojo=00f067aa0ba902b7')))
    assert decoded['trace_state'] == 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'


@pytest.mark.parametrize('tags, kind, attributes', [
    pytest.param({}, INTERNAL, {}, id='no-kind-is-internal'),
    pytest.param({'span.kind': 'server'}, SERVER, {}, id='server'),
    pytest.param({'span.kind': 'CLIENT'}, CLIENT, {}, id='any-case'),
    pytest.param({'span.kind': 'producer'}, PbSpan.SPAN_KIND_PRODUCER, {}, id='producer'),
    pytest.param({'span.kind': 'consumer'}, PbSpan.SPAN_KIND_CONSUMER, {}, id='consumer'),
    pytest.param({'span.kind': 'sideways'}, INTERNAL,
                 {'span.kind': ('string_value', 'sideways')}, id='unknown-stays-attribute'),
    pytest.param({'span.kind': 7}, INTERNAL, {'span.kind': ('int_value', 7)},
                 id='not-a-string-stays-attribute'),
])
def test_span_kind(tags: dict[str, Any], kind: int, attributes: dict[str, Any]) -> None:
    decoded = _one(_span(tags))
    assert (decoded['kind'], decoded['attributes']) == (kind, attributes)


@pytest.mark.parametrize('tags, status, attributes', [
    pytest.param({'error': True}, (ERROR, ''), {}, id='true-is-error'),
    pytest.param({'error': 'true'}, (ERROR, ''), {}, id='text-true-is-error'),
    pytest.param({'error': False}, (OK, ''), {}, id='false-is-ok'),
    pytest.param({'error': 'maybe'}, (UNSET, ''), {'error': ('string_value', 'maybe')},
                 id='other-values-stay-attributes'),
    pytest.param({'span.kind': 'server', 'http.status_code': 404, 'error': True}, (UNSET, ''),
                 {'http.status_code': ('int_value', 404)}, id='server-4xx-leaves-it-unset'),
    pytest.param({'span.kind': 'server', 'http.status_code': '429', 'error': True},
                 (UNSET, ''), {'http.status_code': ('string_value', '429')},
                 id='server-4xx-as-text'),
    pytest.param({'span.kind': 'server', 'http.status_code': 503, 'error': True},
                 (ERROR, ''), {'http.status_code': ('int_value', 503)}, id='server-5xx'),
    pytest.param({'span.kind': 'client', 'http.status_code': 404, 'error': True},
                 (ERROR, ''), {'http.status_code': ('int_value', 404)},
                 id='client-4xx-error-is-error'),
])
def test_the_error_tag_is_the_status(tags: dict[str, Any], status: tuple[int, str],
                                     attributes: dict[str, Any]) -> None:
    decoded = _one(_span(tags))
    assert (decoded['status'], decoded['attributes']) == (status, attributes)


EXC = _raised()


@pytest.mark.parametrize('logs, events, status', [
    pytest.param([(T0 + 0.001, {'event': 'cache-miss', 'key': 'user:42', 'size': 3})],
                 [(1_700_000_000_001_000_000, 'cache-miss',
                   {'key': ('string_value', 'user:42'), 'size': ('int_value', 3)})],
                 (UNSET, ''), id='event-field-is-the-name'),
    pytest.param([(T0, {'message': 'hello'})],
                 [(1_700_000_000_000_000_000, 'log', {'message': ('string_value', 'hello')})],
                 (UNSET, ''), id='no-event-field-is-log'),
    pytest.param([(T0, {'event': 'error', 'error.kind': 'ValueError', 'message': 'bad',
                        'stack': 'Traceback ...', 'request.id': 'r1'})],
                 [(1_700_000_000_000_000_000, 'exception',
                   {'exception.type': ('string_value', 'ValueError'),
                    'exception.message': ('string_value', 'bad'),
                    'exception.stacktrace': ('string_value', 'Traceback ...'),
                    'request.id': ('string_value', 'r1')})],
                 (ERROR, 'ValueError: bad'), id='error-log-is-an-exception-event'),
    pytest.param([(T0, {'event': 'error', 'error.object': EXC})],
                 [(1_700_000_000_000_000_000, 'exception',
                   {'exception.type': ('string_value', 'Boom'),
                    'exception.message': ('string_value', 'it broke'),
                    'exception.stacktrace': ('string_value', 'STACK')})],
                 (ERROR, 'Boom: it broke'), id='error-object-fills-type-message-stack'),
    pytest.param([(T0, {'event': 'error', 'error.object': EXC, 'message': 'ours'})],
                 [(1_700_000_000_000_000_000, 'exception',
                   {'exception.type': ('string_value', 'Boom'),
                    'exception.message': ('string_value', 'ours'),
                    'exception.stacktrace': ('string_value', 'STACK')})],
                 (ERROR, 'Boom: ours'), id='explicit-fields-win-over-the-object'),
    pytest.param([('not a time', {'event': 'x'}), (T0, {'event': 'kept'})],
                 [(1_700_000_000_000_000_000, 'kept', {})], (UNSET, ''),
                 id='malformed-record-skipped'),
    pytest.param([(T0, 'just text')],
                 [(1_700_000_000_000_000_000, 'log', {'message': ('string_value', 'just text')})],
                 (UNSET, ''), id='fields-not-a-mapping'),
])
def test_logs_become_events(logs: Any, events: Any, status: tuple[int, str]) -> None:
    decoded = _one(_span({'error': True} if status[0] == ERROR else None, logs=logs))
    for _, _, attributes in decoded['events']:
        stack = attributes.get('exception.stacktrace')
        if stack is not None and stack[1].startswith('Traceback (most recent call last)'):
            assert 'Boom: it broke' in stack[1] and '_raised' in stack[1]
            attributes['exception.stacktrace'] = ('string_value', 'STACK')
    assert (decoded['events'], decoded['status']) == (events, status)


def test_references_become_links() -> None:
    other_trace = 'a3ce929d0e0e4736'
    references = (
        Reference(ReferenceType.FOLLOWS_FROM, _ctx('00000000000000b1', tracestate='k=v')),
        Reference(ReferenceType.CHILD_OF, _ctx('00000000000000a2', trace_id=other_trace)),
    )
    decoded = _one(FakeSpan(references=references))
    assert decoded['links'] == [
        (TRACE_ID, '00000000000000b1', 'k=v',
         {'opentracing.ref_type': ('string_value', 'follows_from')}, 1),
        ('0000000000000000' + other_trace, '00000000000000a2', '',
         {'opentracing.ref_type': ('string_value', 'child_of')}, 1),
    ]


@pytest.mark.parametrize('value, expected', [
    pytest.param(2 ** 63 - 1, ('int_value', 2 ** 63 - 1), id='int64-max'),
    pytest.param(-(2 ** 63), ('int_value', -(2 ** 63)), id='int64-min'),
    pytest.param(2 ** 70, ('string_value', str(2 ** 70)), id='too-big-becomes-text'),
    pytest.param(127, ('int_value', 127), id='one-byte-varint'),
    pytest.param(128, ('int_value', 128), id='two-byte-varint'),
    pytest.param(0x3FFF, ('int_value', 0x3FFF), id='two-byte-varint-max'),
    pytest.param(0x4000, ('int_value', 0x4000), id='three-byte-varint'),
    pytest.param(0x1FFFFF, ('int_value', 0x1FFFFF), id='three-byte-varint-max'),
    pytest.param(0x200000, ('int_value', 0x200000), id='four-byte-varint'),
    pytest.param(1e300, ('double_value', 1e300), id='double'),
    pytest.param(float('inf'), ('double_value', float('inf')), id='infinity'),
    pytest.param(Unprintable(), ('string_value', '<unprintable>'), id='broken-str'),
    pytest.param(ValueError, ('string_value', 'ValueError'), id='a-type-by-name'),
    pytest.param(['a', 1], ('string_value', "['a', 1]"), id='list-as-text'),
    pytest.param('zürich ☃', ('string_value', 'zürich ☃'), id='non-ascii'),
    pytest.param('bad \ud800 surrogate', ('string_value', 'bad ? surrogate'),
                 id='lone-surrogate-replaced'),
    pytest.param('x' * 5000, ('string_value', 'x' * 4096), id='cut-to-max-value-length'),
    pytest.param('', ('string_value', ''), id='empty'),
])
def test_attribute_values_keep_their_type(value: Any, expected: Any) -> None:
    for piece in ('before', 'value', 'again'):
        # twice: the second time the (key, value) cache answers
        decoded = _one(_span({'key': value, 'other': piece}))
        assert decoded['attributes']['key'] == expected


def test_nan_is_a_double() -> None:
    (decoded,) = [_one(_span({'key': float('nan')}))]
    kind, value = decoded['attributes']['key']
    assert kind == 'double_value' and math.isnan(value)


def test_long_names_and_keys_are_cut_and_long_messages_have_long_varints() -> None:
    decoded = _one(_span({'k' * 300: 'v' * 20_000}, operation_name='n' * 20_000),
                   max_value_length=20_000)
    assert decoded['name'] == 'n' * 20_000
    assert decoded['attributes'] == {'k' * 300: ('string_value', 'v' * 20_000)}
    short = _one(_span({'k' * 300: 'v'}, operation_name='n' * 300), max_value_length=16)
    assert short['name'] == 'n' * 16 and list(short['attributes']) == ['k' * 16]


def test_non_string_tag_keys_become_text() -> None:
    assert _one(_span({7: 'seven'}))['attributes'] == {'7': ('string_value', 'seven')}


BAD_CONTEXTS = [
    pytest.param(SpanContext('xyz', SPAN_ID, None, True), id='trace-not-hex'),
    pytest.param(SpanContext(TRACE_ID[:-1], SPAN_ID, None, True), id='trace-odd-width'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID[:-2], None, True), id='span-short'),
    pytest.param(SpanContext(TRACE_ID, '352bff9a 74ca9ad', None, True), id='span-whitespace'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID, 'g' * 16, True), id='parent-not-hex'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID, 12, True), id='parent-not-text'),  # type: ignore
    pytest.param(SpanContext(None, None, None, True), id='no-ids'),
    pytest.param(SpanContext(TRACE_ID + '00', SPAN_ID, None, True), id='trace-too-long'),
]


@pytest.mark.parametrize('cls', ENCODERS)
@pytest.mark.parametrize('context', BAD_CONTEXTS)
def test_a_span_with_bad_ids_is_dropped(cls: Any, context: SpanContext) -> None:
    assert cls(RESOURCE, '1').encode(FakeSpan(context)) is None


def test_json_is_ascii_lower_camel_case_with_string_int64s() -> None:
    encoder = JsonEncoder(RESOURCE, '1')
    text = encoder.encode(_span({'span.kind': 'client', 'n': 5, 'snow': '☃'},
                                logs=[(T0, {'event': 'x'})]))
    assert text is not None and text.isascii()
    document = json.loads(text)
    assert document['kind'] == 3  # an integer enum, never 'SPAN_KIND_CLIENT'
    assert document['startTimeUnixNano'] == '1700000000000000000'  # int64 as a string
    assert document['attributes'][0] == {'key': 'n', 'value': {'intValue': '5'}}
    assert document['events'][0]['timeUnixNano'] == '1700000000000000000'
    assert document['traceId'] == TRACE_ID and document['parentSpanId'] == PARENT_ID
    assert not any('_' in key for key in document)


@pytest.mark.parametrize('cls', ENCODERS)
def test_the_caches_are_bounded(cls: Any) -> None:
    """A program inventing tag keys, values and span names grows no cache without limit."""
    encoder = cls(RESOURCE, '1')
    for i in range(3000):
        assert encoder.encode(_span({f'key-{i}': f'value-{i}', 'k': f'v-{i}'},
                                    operation_name=f'name-{i}')) is not None
    assert len(encoder._key_cache) <= 1024 and len(encoder._pair_cache) <= 64
    assert all(len(values) <= 32 for values in encoder._pair_cache.values())
    assert len(getattr(encoder, '_name_cache', ())) <= 256


@pytest.mark.parametrize('cls', ENCODERS)
def test_max_value_length_is_checked(cls: Any) -> None:
    with pytest.raises(ValueError, match='max_value_length'):
        cls(RESOURCE, '1', max_value_length=3)


_VALUES = st.one_of(st.text(max_size=300), st.booleans(),
                    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
                    st.floats(allow_nan=False), st.integers(min_value=2 ** 63))


@settings(max_examples=150, deadline=None)
@given(tags=st.dictionaries(st.text(min_size=1, max_size=40), _VALUES, max_size=12),
       name=st.text(max_size=200))
def test_any_tags_decode_the_same_in_both_encodings(tags: dict[str, Any], name: str) -> None:
    decoded = _one(_span(dict(tags), operation_name=name))
    expected_name = name.encode('utf-8', 'replace').decode()
    assert decoded['name'] == expected_name
    for key, value in tags.items():
        if key in ('span.kind', 'error'):
            continue
        key = key.encode('utf-8', 'replace').decode()
        kind, got = decoded['attributes'][key]
        if type(value) is bool:
            assert (kind, got) == ('bool_value', value)
        elif type(value) is int:
            assert (kind, got) == (('int_value', value) if value < 2 ** 63
                                   else ('string_value', str(value)))
        elif type(value) is float:
            assert kind == 'double_value' and got == value
        else:
            assert (kind, got) == ('string_value', value.encode('utf-8', 'replace').decode())


def test_spans_of_the_builtin_tracer_map_as_opentracing_compatibility_says() -> None:
    """The real tracer's spans: a `with` block that raises, a FOLLOWS_FROM reference."""
    from opentracing import follows_from

    from falcon_tracing_wsgi.testing import make_tracer
    tracer, reporter = make_tracer()
    cause = tracer.start_span('enqueue')
    cause.finish()
    with pytest.raises(KeyError):
        with tracer.start_span('work', references=[follows_from(cause.context)],
                               tags={'span.kind': 'consumer', 'attempt': 2}) as span:
            span.log_kv({'event': 'picked', 'queue': 'q1'})
            raise KeyError('job-7')
    decoded = _one(reporter.spans[-1])
    assert decoded['kind'] == PbSpan.SPAN_KIND_CONSUMER
    assert decoded['parent_span_id'] == cause.context.span_id
    assert decoded['links'] == [(cause.context.trace_id, cause.context.span_id, '',
                                 {'opentracing.ref_type': ('string_value', 'follows_from')},
                                 1)]
    assert decoded['attributes'] == {'attempt': ('int_value', 2)}
    assert decoded['status'] == (ERROR, "KeyError: 'job-7'")
    (picked, exception) = decoded['events']
    assert picked[1:] == ('picked', {'queue': ('string_value', 'q1')})
    name, fields = exception[1:]
    assert name == 'exception'
    assert fields['exception.type'] == ('string_value', 'KeyError')
    assert fields['exception.message'] == ('string_value', "'job-7'")
    assert 'raise KeyError' in fields['exception.stacktrace'][1]
    assert decoded['end'] >= decoded['start']


class NoTruth:
    """A value whose comparison has no truth value (as a numpy array's)."""

    def __eq__(self, other: object) -> Any:
        return self

    def __bool__(self) -> bool:
        raise ValueError('ambiguous')

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return 'no-truth'


_ANYTHING = st.one_of(_VALUES, st.none(), st.binary(max_size=20),
                      st.lists(st.integers(), max_size=3), st.just(NoTruth()),
                      st.just(Unprintable()), st.just(EXC), st.just(ValueError))


@settings(max_examples=150, deadline=None)
@given(tags=st.dictionaries(st.sampled_from(['error', 'span.kind', 'a', 'b']), _ANYTHING),
       logs=st.lists(st.tuples(st.one_of(st.floats(allow_nan=True), st.just(T0)),
                               st.one_of(st.dictionaries(
                                   st.sampled_from(['event', 'error.kind', 'message', 'stack',
                                                    'error.object', 'x']), _ANYTHING),
                                   _ANYTHING)), max_size=3))
def test_hostile_values_never_make_a_span_unencodable(tags: dict[str, Any],
                                                     logs: list[Any]) -> None:
    _both(_span(tags, logs=logs or None))


@pytest.mark.parametrize('tags, logs, dropped', [
    pytest.param(3, 2, (0, 0), id='within-the-limits'),
    pytest.param(5, 2, (2, 0), id='tags-dropped'),
    pytest.param(3, 6, (0, 3), id='events-dropped'),
    pytest.param(7, 9, (4, 6), id='both-dropped'),
])
def test_what_the_span_limits_dropped_is_in_otlps_own_fields(tags: int, logs: int,
                                                           dropped: tuple[int, int]) -> None:
    from falcon_tracing_wsgi.testing import make_tracer
    from falcon_tracing_wsgi.tracer.limits import SpanLimits
    tracer, reporter = make_tracer(span_limits=SpanLimits(attribute_count=3, event_count=3))
    span = tracer.start_span('work')
    for index in range(tags):
        span.set_tag(f'tag{index}', index)
    for index in range(logs):
        span.log_kv({'event': f'step{index}'})
    span.finish()
    (finished,) = reporter.spans
    for cls in (ProtobufEncoder, JsonEncoder):
        encoder = cls(RESOURCE, '9.9.9')
        request = decode(encoder.frame([encoder.encode(finished)]), encoder.content_type)
        (decoded,) = request.resource_spans[0].scope_spans[0].spans
        assert (decoded.dropped_attributes_count, decoded.dropped_events_count) == dropped
        assert len(decoded.attributes) == min(tags, 3) and len(decoded.events) == min(logs, 3)
