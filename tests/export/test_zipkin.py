"""The Zipkin v2 JSON encoder: golden cases, an independent oracle, hostile values."""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_tracing_wsgi.tracer.context import SpanContext
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
from falcon_tracing_wsgi.zipkin.schema import validate_span

from tests.spans import PARENT_ID, T0, TRACE_ID, FakeSpan

LOCAL = Endpoint('backend', ipv4='10.0.0.7', port=8000)
LOCAL_JSON = {'serviceName': 'backend', 'ipv4': '10.0.0.7', 'port': 8000}
SPAN_ID = '352bff9a74ca9ad2'
LIMIT = 4096


# -- the oracle: a plain dict-based encoding, written for obviousness, not speed ----------

def _oracle_text(value: Any) -> str:
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    return str(value)


def _oracle_log_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, BaseException):
        return f'{type(value).__qualname__}: {value}' if str(value) else \
            type(value).__qualname__
    return _oracle_text(value)


def _oracle_ipv4(value: Any) -> bool:
    if not isinstance(value, str) or value.count('.') != 3:
        return False
    try:
        return str(ipaddress.IPv4Address(value)) == value
    except ValueError:
        return False


def _oracle_ipv6(value: Any) -> bool:
    if not isinstance(value, str) or '%' in value:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _oracle_port(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 1 <= value <= 65535:
        return value
    return None


def reference_encode(span: Any, local: Endpoint = LOCAL, limit: int = LIMIT) -> dict[str, Any]:
    ctx = span.context
    out: dict[str, Any] = {'traceId': ctx.trace_id, 'id': ctx.span_id,
                           'name': span.operation_name[:limit],
                           'timestamp': round(span.start_time * 1e6),
                           'duration': max(1, round(span.duration * 1e6)),
                           'localEndpoint': local.to_dict()}
    if ctx.parent_id is not None:
        out['parentId'] = ctx.parent_id
    if ctx.debug:
        out['debug'] = True
    tags = dict(span.tags)
    kind = tags.pop('span.kind', None)
    if isinstance(kind, str) and kind.lower() in ('server', 'client', 'producer', 'consumer'):
        out['kind'] = kind.upper()
    elif 'span.kind' in span.tags:
        tags['span.kind'] = kind
    remote: dict[str, Any] = {}
    checks = {'peer.service': ('serviceName', lambda v: v if isinstance(v, str) and v
                               and len(v) <= limit else None),
              'peer.ipv4': ('ipv4', lambda v: v if _oracle_ipv4(v) else None),
              'peer.ipv6': ('ipv6', lambda v: v if _oracle_ipv6(v) else None),
              'peer.port': ('port', _oracle_port)}
    for tag, (field, check) in checks.items():
        if tag in tags:
            valid = check(tags[tag])
            if valid is not None:
                remote[field] = valid
                del tags[tag]
    if remote:
        out['remoteEndpoint'] = remote
    if tags:
        out['tags'] = {str(k)[:limit]: _oracle_text(v)[:limit] for k, v in tags.items()}
    if span.logs:
        annotations = []
        for timestamp, fields in span.logs:
            if list(fields) == ['event']:
                value = _oracle_log_value(fields['event'])
            else:
                value = ' '.join(f'{k}={_oracle_log_value(v)}' for k, v in fields.items())
            item = {'timestamp': round(timestamp * 1e6), 'value': value[:limit]}
            if item not in annotations:
                annotations.append(item)
        out['annotations'] = annotations
    return out


def _span(tags: Optional[dict[str, Any]] = None, **kwargs: Any) -> FakeSpan:
    return FakeSpan(tags=tags, **kwargs)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError('no')


class Custom:
    def __str__(self) -> str:
        return 'custom!'


SPAN_TABLE = [
    pytest.param(_span(), id='no-tags'),
    pytest.param(_span({'span.kind': 'server', 'component': 'falcon', 'http.method': 'GET',
                        'http.url': 'http://localhost/users/42?x=1', 'http.status_code': 200,
                        'peer.ipv4': '127.0.0.1', 'peer.port': 54321}), id='server-span'),
    pytest.param(_span({'span.kind': 'CLIENT', 'peer.service': 'db', 'peer.ipv6': '::1',
                        'peer.port': '5432', 'peer.hostname': 'db.local'}), id='client-span'),
    pytest.param(_span({'span.kind': 'producer'}), id='producer'),
    pytest.param(_span({'span.kind': 'Consumer'}), id='consumer-mixed-case'),
    pytest.param(_span({'span.kind': 'internal'}), id='kind-unknown-stays-tag'),
    pytest.param(_span({'span.kind': None}), id='kind-none-stays-tag'),
    pytest.param(_span({'span.kind': 3}), id='kind-number-stays-tag'),
    pytest.param(_span({'error': True, 'cached': False, 'retries': 0, 'ratio': 0.25,
                        'big': 2 ** 80, 'none': None, 'obj': Custom(), 'bytes': b'\x00b',
                        'nan': float('nan'), 'inf': float('-inf'), 'list': [1, 'a']}),
                 id='value-types'),
    pytest.param(_span({'peer.ipv4': '999.1.1.1', 'peer.port': 0, 'peer.ipv6': 'nope',
                        'peer.service': ''}), id='invalid-peer-values-stay-tags'),
    pytest.param(_span({'peer.ipv4': '10.0.0.01', 'peer.port': True}),
                 id='leading-zero-ipv4-and-bool-port'),
    pytest.param(_span({'peer.port': 65535}), id='port-only'),
    pytest.param(_span({'peer.port': '070000'}), id='port-string-too-big'),
    pytest.param(_span({'peer.service': 'payments', 'peer.ipv4': '192.168.0.1'}),
                 id='service-and-ipv4'),
    pytest.param(_span({'peer.ipv6': 'fe80::1%eth0'}), id='ipv6-scope-stays-tag'),
    pytest.param(_span({'ünï': 'välüé', 'emoji': '\U0001f600', 'ctl': '\x00\x1f\x7f\n\t"\\',
                        'surrogate': '\udcff', '': 'empty-key'}), id='hostile-strings'),
    pytest.param(_span({'k' * 5000: 'v' * 5000}), id='huge-key-and-value'),
    pytest.param(_span({'a': 1}, operation_name='N' * 5000), id='huge-name'),
    pytest.param(_span(operation_name='GET /Users/{ID}'), id='name-kept-as-given'),
    pytest.param(_span(operation_name='naïve "quoted"\n'), id='name-escaped'),
    pytest.param(_span(context=SpanContext(TRACE_ID, SPAN_ID, None, True)), id='root'),
    pytest.param(_span(context=SpanContext('5af7183fb1d4cf5f', SPAN_ID, PARENT_ID, True)),
                 id='64-bit-trace'),
    pytest.param(_span(context=SpanContext(TRACE_ID, SPAN_ID, PARENT_ID, True, debug=True)),
                 id='debug'),
    pytest.param(_span(duration=0.0), id='zero-duration-is-1us'),
    pytest.param(_span(duration=-1.0), id='negative-duration-is-1us'),
    pytest.param(_span(duration=0.0000004), id='sub-microsecond'),
    pytest.param(_span(duration=3600.0), id='an-hour'),
    pytest.param(_span(start_time=T0 + 0.123456789), id='sub-microsecond-start'),
    pytest.param(_span(logs=[(T0 + 0.001, {'event': 'cache-miss'})]), id='log-event'),
    pytest.param(_span(logs=[(T0 + 0.001, {'event': 'retry', 'attempt': 2})]),
                 id='log-fields'),
    pytest.param(_span(logs=[(T0 + 0.001, {'message': 'm' * 10_000})]), id='log-huge'),
    pytest.param(_span(logs=[(T0, {'event': 'x'}), (T0, {'event': 'x'}),
                             (T0 + 0.5, {'event': 'x'})]), id='log-duplicates-removed'),
    pytest.param(_span(logs=[(T0, {'event': 'error', 'error.kind': ValueError,
                                   'error.object': ValueError('bad'), 'message': 'bad'})]),
                 id='log-error'),
    pytest.param(_span(logs=[(T0, {'event': 'ünï\x00'})]), id='log-hostile'),
]


@pytest.mark.parametrize('span', SPAN_TABLE)
def test_fast_encoder_matches_the_oracle_and_is_valid_zipkin(span: FakeSpan) -> None:
    text = JsonV2Encoder(LOCAL).encode(span)
    assert text is not None
    assert text.isascii()
    decoded = json.loads(text)
    assert decoded == reference_encode(span)
    assert validate_span(decoded) == []


@pytest.mark.parametrize('span', SPAN_TABLE)
def test_a_warm_encoder_gives_the_same_text(span: FakeSpan) -> None:
    # The key and address caches must not change the result.
    encoder = JsonV2Encoder(LOCAL)
    first = encoder.encode(span)
    assert encoder.encode(span) == first


GOLDEN_SERVER = (
    '{"traceId":"4e441824ec2b6a44ffdc9bb9a6453df3","parentId":"6b221d5bc9e6496c",'
    '"id":"352bff9a74ca9ad2","name":"GET /users/{id}","timestamp":1700000000000000,'
    '"duration":1500,"kind":"SERVER","remoteEndpoint":{"ipv4":"127.0.0.1","port":54321},'
    '"tags":{"http.method":"GET","http.status_code":"200","error":"true"},'
    '"localEndpoint":{"serviceName":"backend","ipv4":"10.0.0.7","port":8000}}')


@pytest.mark.parametrize('span,expected', [
    pytest.param(_span({'span.kind': 'server', 'http.method': 'GET', 'peer.ipv4': '127.0.0.1',
                        'peer.port': 54321, 'http.status_code': 200, 'error': True},
                       operation_name='GET /users/{id}'), GOLDEN_SERVER, id='server'),
    pytest.param(_span(context=SpanContext('5af7183fb1d4cf5f', SPAN_ID, None, True,
                                           debug=True), operation_name='tick',
                       logs=[(T0 + 0.000_001, {'event': 'start'})]),
                 '{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","name":"tick",'
                 '"timestamp":1700000000000000,"duration":1500,"debug":true,'
                 '"localEndpoint":{"serviceName":"backend","ipv4":"10.0.0.7","port":8000},'
                 '"annotations":[{"timestamp":1700000000000001,"value":"start"}]}',
                 id='debug-root-with-annotation'),
    pytest.param(_span({'q': 'é"\n'}, operation_name='x'),
                 '{"traceId":"4e441824ec2b6a44ffdc9bb9a6453df3","parentId":"6b221d5bc9e6496c",'
                 '"id":"352bff9a74ca9ad2","name":"x","timestamp":1700000000000000,'
                 '"duration":1500,"tags":{"q":"\\u00e9\\"\\n"},'
                 '"localEndpoint":{"serviceName":"backend","ipv4":"10.0.0.7","port":8000}}',
                 id='escapes-are-ascii'),
])
def test_golden_encodings(span: FakeSpan, expected: str) -> None:
    assert JsonV2Encoder(LOCAL).encode(span) == expected


@pytest.mark.parametrize('context', [
    pytest.param(SpanContext(TRACE_ID.upper(), SPAN_ID, PARENT_ID, True), id='upper-trace'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID[:-1], PARENT_ID, True), id='short-span-id'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID, PARENT_ID + '0', True), id='long-parent'),
    pytest.param(SpanContext(TRACE_ID[:20], SPAN_ID, None, True), id='trace-20'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID[:-1] + '"', None, True), id='quote-in-id'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID[:-1] + 'é', None, True), id='non-ascii-id'),
    pytest.param(SpanContext(TRACE_ID, SPAN_ID[:-1] + 'g', None, True), id='non-hex-id'),
    pytest.param(SpanContext(None, None, None, True), id='no-ids'),
    pytest.param(SpanContext(TRACE_ID, 12345, None, True), id='int-span-id'),
])
def test_a_span_with_bad_ids_is_skipped_not_sent(context: SpanContext) -> None:
    assert JsonV2Encoder(LOCAL).encode(_span(context=context)) is None


def test_tags_and_logs_of_the_span_are_not_modified() -> None:
    tags = {'span.kind': 'server', 'peer.ipv4': '10.1.2.3', 'x': 1}
    logs = [(T0, {'event': 'e'})]
    span = _span(dict(tags), logs=[(T0, {'event': 'e'})])
    JsonV2Encoder(LOCAL).encode(span)
    assert span.tags == tags
    assert span.logs == logs


def test_a_tag_whose_str_raises_becomes_a_placeholder() -> None:
    decoded = json.loads(JsonV2Encoder(LOCAL).encode(_span({'bad': Unprintable()})))
    assert decoded['tags'] == {'bad': '<unprintable>'}


@pytest.mark.parametrize('limit', [16, 100, 4096])
def test_max_value_length_bounds_names_tags_and_annotations(limit: int) -> None:
    span = _span({'v': 'x' * 10_000, 'k' * 10_000: 'y'}, operation_name='n' * 10_000,
                 logs=[(T0, {'event': 'e' * 10_000}), (T0 + 1, {'a': 'b' * 10_000})])
    decoded = json.loads(JsonV2Encoder(LOCAL, max_value_length=limit).encode(span))
    assert decoded == reference_encode(span, limit=limit)
    assert len(decoded['name']) == limit
    assert all(len(k) <= limit and len(v) <= limit for k, v in decoded['tags'].items())
    assert all(len(a['value']) <= limit for a in decoded['annotations'])


def test_a_traceback_in_a_log_is_shown_as_its_innermost_frame() -> None:
    try:
        raise KeyError('k')
    except KeyError:
        traceback_object = sys.exc_info()[2]
    span = _span(logs=[(T0, {'event': 'error', 'stack': traceback_object})])
    decoded = json.loads(JsonV2Encoder(LOCAL).encode(span))
    (annotation,) = decoded['annotations']
    assert annotation['value'].startswith('event=error stack=')
    assert 'test_a_traceback_in_a_log_is_shown_as_its_innermost_frame' in annotation['value']


def test_malformed_log_records_are_skipped() -> None:
    span = _span(logs=[('not-a-time', {'event': 'x'}), (T0, {'event': 'ok'}), None])
    decoded = json.loads(JsonV2Encoder(LOCAL).encode(span))
    assert decoded['annotations'] == [{'timestamp': 1_700_000_000_000_000, 'value': 'ok'}]


def test_many_distinct_tag_keys_do_not_grow_the_cache_without_bound() -> None:
    encoder = JsonV2Encoder(LOCAL)
    for index in range(3000):
        span = _span({f'key-{index}': 'v', 'peer.ipv4': f'10.{index // 256}.{index % 256}.1'})
        assert json.loads(encoder.encode(span))['tags'] == {f'key-{index}': 'v'}
    assert len(encoder._key_cache) <= 1024
    assert len(encoder._address_cache) <= 1024


@pytest.mark.parametrize('kwargs,message', [
    pytest.param({'service_name': ''}, 'service_name', id='empty-service'),
    pytest.param({'service_name': None}, 'service_name', id='no-service'),
    pytest.param({'service_name': 's', 'ipv4': '1.2.3'}, 'ipv4', id='bad-ipv4'),
    pytest.param({'service_name': 's', 'ipv6': '1.2.3.4'}, 'ipv6', id='bad-ipv6'),
    pytest.param({'service_name': 's', 'port': 0}, 'port', id='port-zero'),
    pytest.param({'service_name': 's', 'port': '80'}, 'port', id='port-string'),
    pytest.param({'service_name': 's', 'port': True}, 'port', id='port-bool'),
])
def test_endpoint_rejects_bad_fields_with_a_named_message(kwargs: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Endpoint(**kwargs)


@pytest.mark.parametrize('endpoint,expected', [
    pytest.param(Endpoint('a'), {'serviceName': 'a'}, id='name-only'),
    pytest.param(Endpoint('a', '1.2.3.4', '2001:db8::1', 80),
                 {'serviceName': 'a', 'ipv4': '1.2.3.4', 'ipv6': '2001:db8::1', 'port': 80},
                 id='all-fields'),
    pytest.param(Endpoint('Ünï "q"'), {'serviceName': 'Ünï "q"'}, id='escaped-name'),
])
def test_endpoint_json_and_dict_agree(endpoint: Endpoint, expected: dict[str, Any]) -> None:
    assert endpoint.to_dict() == expected
    assert json.loads(endpoint.to_json()) == expected


@pytest.mark.parametrize('kwargs', [
    pytest.param({'max_value_length': 15}, id='too-small'),
    pytest.param({'max_value_length': True}, id='bool'),
])
def test_encoder_options_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match='max_value_length'):
        JsonV2Encoder(LOCAL, **kwargs)


def test_encoder_needs_an_endpoint() -> None:
    with pytest.raises(TypeError, match='Endpoint'):
        JsonV2Encoder('backend')  # type: ignore[arg-type]


_values = st.one_of(st.text(max_size=40), st.booleans(), st.integers(),
                    st.floats(allow_nan=True), st.none(),
                    st.sampled_from(['127.0.0.1', '::1', 'server', 'CLIENT', '80', '0']))
_keys = st.one_of(st.text(max_size=20),
                  st.sampled_from(['span.kind', 'peer.service', 'peer.ipv4', 'peer.ipv6',
                                   'peer.port', 'peer.hostname', 'error']))


@settings(max_examples=300, deadline=None)
@given(tags=st.dictionaries(_keys, _values, max_size=8),
       name=st.text(max_size=30),
       logs=st.lists(st.tuples(st.floats(min_value=T0, max_value=T0 + 10),
                               st.dictionaries(st.text(max_size=8), _values, max_size=3)),
                     max_size=3))
def test_property_any_tags_encode_to_valid_zipkin_equal_to_the_oracle(
        tags: dict[str, Any], name: str, logs: list[tuple[float, dict[str, Any]]]) -> None:
    span = _span(tags, operation_name=name, logs=logs or None)
    decoded = json.loads(JsonV2Encoder(LOCAL).encode(span))
    assert validate_span(decoded) == []
    assert decoded == reference_encode(span)


@pytest.mark.parametrize('span_tags, expected', [
    pytest.param({}, {'env': 'prod', 'gunicorn.worker.pid': '12'}, id='no-span-tags'),
    pytest.param({'http.method': 'GET'},
                 {'http.method': 'GET', 'env': 'prod', 'gunicorn.worker.pid': '12'},
                 id='merged'),
    pytest.param({'env': 'span-wins'}, {'env': 'span-wins', 'gunicorn.worker.pid': '12'},
                 id='span-tag-wins'),
    pytest.param({'env': 'a', 'gunicorn.worker.pid': 'b'},
                 {'env': 'a', 'gunicorn.worker.pid': 'b'}, id='span-tags-win-all'),
    pytest.param({'span.kind': 'server', 'peer.port': 80},
                 {'env': 'prod', 'gunicorn.worker.pid': '12'}, id='only-lifted-span-tags'),
])
def test_process_tags_are_added_to_every_span(span_tags, expected):
    import json as _json
    from types import SimpleNamespace

    from falcon_tracing_wsgi.tracer.context import SpanContext
    from falcon_tracing_wsgi.zipkin import Endpoint, JsonV2Encoder, validate_span
    encoder = JsonV2Encoder(Endpoint('svc'),
                            process_tags={'env': 'prod', 'gunicorn.worker.pid': '12'})
    span = SimpleNamespace(context=SpanContext('a' * 32, 'b' * 16, sampled=True),
                           operation_name='op', start_time=1_700_000_000.0, duration=0.001,
                           tags=dict(span_tags), logs=None)
    encoded = _json.loads(encoder.encode(span))
    assert validate_span(encoded) == []
    assert encoded['tags'] == expected
