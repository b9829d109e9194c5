"""The strict Zipkin v2 span check: valid spans pass, each kind of mistake is named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from falcon_tracing_wsgi.zipkin.schema import validate_span, validate_spans

VALID: dict[str, Any] = {
    'traceId': '5af7183fb1d4cf5f',
    'parentId': '6b221d5bc9e6496c',
    'id': '352bff9a74ca9ad2',
    'name': 'get /api',
    'timestamp': 1556604172355737,
    'duration': 1431,
    'kind': 'SERVER',
    'localEndpoint': {'serviceName': 'backend', 'ipv4': '192.168.99.1', 'port': 3306},
    'remoteEndpoint': {'ipv4': '172.19.0.2', 'port': 58648},
    'tags': {'http.method': 'GET', 'http.path': '/api'},
}


def _with(**changes: Any) -> dict[str, Any]:
    span = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is _DELETE:
            span.pop(key, None)
        else:
            span[key] = value
    return span


_DELETE = object()


@pytest.mark.parametrize('span', [
    pytest.param(VALID, id='zipkin-api-example'),
    pytest.param({'traceId': '5af7183fb1d4cf5f', 'id': '352bff9a74ca9ad2'}, id='minimal'),
    pytest.param(_with(traceId='4e441824ec2b6a44ffdc9bb9a6453df3'), id='128-bit-trace'),
    pytest.param(_with(traceId='00000000000000004e441824ec2b6a44'), id='128-bit-high-zero'),
    pytest.param(_with(parentId=_DELETE, kind=_DELETE), id='root-local-span'),
    pytest.param(_with(kind='CLIENT'), id='client'),
    pytest.param(_with(kind='PRODUCER'), id='producer'),
    pytest.param(_with(kind='CONSUMER'), id='consumer'),
    pytest.param(_with(debug=True, shared=False), id='flags'),
    pytest.param(_with(duration=1), id='duration-1'),
    pytest.param(_with(name=''), id='empty-name'),
    pytest.param(_with(tags={}), id='no-tags'),
    pytest.param(_with(localEndpoint={}), id='empty-endpoint'),
    pytest.param(_with(remoteEndpoint={'ipv6': '2001:db8::c001', 'port': 1}), id='ipv6'),
    pytest.param(_with(remoteEndpoint={'ipv4': '255.255.255.255', 'port': 65535}),
                 id='edge-address-and-port'),
    pytest.param(_with(annotations=[{'timestamp': 1556604172355737, 'value': 'ws'},
                                    {'timestamp': 1556604172355738, 'value': 'ws'}]),
                 id='annotations'),
    pytest.param(_with(tags={'ünïcode': 'välue', 'empty': ''}), id='unicode-tags'),
])
def test_valid_spans_have_no_errors(span: dict[str, Any]) -> None:
    assert validate_span(span) == []


@pytest.mark.parametrize('span,field', [
    pytest.param(_with(traceId=_DELETE), 'traceId', id='traceId-missing'),
    pytest.param(_with(traceId='5AF7183FB1D4CF5F'), 'traceId', id='traceId-upper'),
    pytest.param(_with(traceId='5af7183fb1d4cf5'), 'traceId', id='traceId-15'),
    pytest.param(_with(traceId='5af7183fb1d4cf5f0'), 'traceId', id='traceId-17'),
    pytest.param(_with(traceId='5af7183fb1d4cf5f5af7183fb1d4cf5'), 'traceId', id='traceId-31'),
    pytest.param(_with(traceId='5af7183fb1d4cf5g'), 'traceId', id='traceId-not-hex'),
    pytest.param(_with(traceId='0000000000000000'), 'traceId', id='traceId-zero'),
    pytest.param(_with(traceId=12345), 'traceId', id='traceId-number'),
    pytest.param(_with(traceId=None), 'traceId', id='traceId-null'),
    pytest.param(_with(traceId='5af7183fb1d4cf5f\n'), 'traceId', id='traceId-newline'),
    pytest.param(_with(id=_DELETE), 'id', id='id-missing'),
    pytest.param(_with(id='352bff9a74ca9ad2352bff9a74ca9ad2'), 'id', id='id-32'),
    pytest.param(_with(id='0000000000000000'), 'id', id='id-zero'),
    pytest.param(_with(parentId=''), 'parentId', id='parentId-empty'),
    pytest.param(_with(parentId=None), 'parentId', id='parentId-null'),
    pytest.param(_with(parentId='6B221D5BC9E6496C'), 'parentId', id='parentId-upper'),
    pytest.param(_with(name=7), 'name', id='name-number'),
    pytest.param(_with(kind=None), 'kind', id='kind-null'),
    pytest.param(_with(kind='server'), 'kind', id='kind-lower'),
    pytest.param(_with(kind='INTERNAL'), 'kind', id='kind-unknown'),
    pytest.param(_with(timestamp=1556604172.355737), 'timestamp', id='timestamp-float'),
    pytest.param(_with(timestamp='1556604172355737'), 'timestamp', id='timestamp-string'),
    pytest.param(_with(timestamp=1556604172), 'timestamp', id='timestamp-seconds'),
    pytest.param(_with(timestamp=1556604172355), 'timestamp', id='timestamp-millis'),
    pytest.param(_with(timestamp=True), 'timestamp', id='timestamp-bool'),
    pytest.param(_with(duration=0), 'duration', id='duration-zero'),
    pytest.param(_with(duration=-5), 'duration', id='duration-negative'),
    pytest.param(_with(duration=1.5), 'duration', id='duration-float'),
    pytest.param(_with(duration=None), 'duration', id='duration-null'),
    pytest.param(_with(debug='true'), 'debug', id='debug-string'),
    pytest.param(_with(shared=1), 'shared', id='shared-number'),
    pytest.param(_with(localEndpoint='backend'), 'localEndpoint', id='endpoint-string'),
    pytest.param(_with(localEndpoint={'serviceName': 5}), 'localEndpoint.serviceName',
                 id='serviceName-number'),
    pytest.param(_with(localEndpoint={'ipv4': '256.1.1.1'}), 'localEndpoint.ipv4',
                 id='ipv4-octet'),
    pytest.param(_with(localEndpoint={'ipv4': '10.0.0'}), 'localEndpoint.ipv4',
                 id='ipv4-three-parts'),
    pytest.param(_with(localEndpoint={'ipv4': '10.0.0.01'}), 'localEndpoint.ipv4',
                 id='ipv4-leading-zero'),
    pytest.param(_with(localEndpoint={'ipv4': '::1'}), 'localEndpoint.ipv4', id='ipv4-is-v6'),
    pytest.param(_with(remoteEndpoint={'ipv6': '2001:db8::g'}), 'remoteEndpoint.ipv6',
                 id='ipv6-bad'),
    pytest.param(_with(remoteEndpoint={'ipv6': 'fe80::1%eth0'}), 'remoteEndpoint.ipv6',
                 id='ipv6-scope'),
    pytest.param(_with(remoteEndpoint={'port': 0}), 'remoteEndpoint.port', id='port-zero'),
    pytest.param(_with(remoteEndpoint={'port': 65536}), 'remoteEndpoint.port', id='port-big'),
    pytest.param(_with(remoteEndpoint={'port': '80'}), 'remoteEndpoint.port',
                 id='port-string'),
    pytest.param(_with(remoteEndpoint={'hostname': 'db'}), 'remoteEndpoint',
                 id='endpoint-unknown-field'),
    pytest.param(_with(annotations={'value': 'x'}), 'annotations', id='annotations-object'),
    pytest.param(_with(annotations=['ws']), 'annotations[0]', id='annotation-string'),
    pytest.param(_with(annotations=[{'value': 'ws'}]), 'annotations[0].timestamp',
                 id='annotation-no-timestamp'),
    pytest.param(_with(annotations=[{'timestamp': 1556604172355737}]),
                 'annotations[0].value', id='annotation-no-value'),
    pytest.param(_with(annotations=[{'timestamp': 1556604172355737, 'value': 3}]),
                 'annotations[0].value', id='annotation-value-number'),
    pytest.param(_with(annotations=[{'timestamp': 1.5, 'value': 'ws'}]),
                 'annotations[0].timestamp', id='annotation-timestamp-float'),
    pytest.param(_with(annotations=[{'timestamp': 1556604172355737, 'value': 'ws'}] * 2),
                 'annotations[1]', id='annotation-duplicate'),
    pytest.param(_with(annotations=[{'timestamp': 1556604172355737, 'value': 'ws',
                                     'endpoint': {}}]),
                 'annotations[0]', id='annotation-unknown-field'),
    pytest.param(_with(tags=['a']), 'tags', id='tags-list'),
    pytest.param(_with(tags={'http.status_code': 200}), 'tags', id='tag-number'),
    pytest.param(_with(tags={'error': True}), 'tags', id='tag-bool'),
    pytest.param(_with(tags={'x': None}), 'tags', id='tag-null'),
    pytest.param(_with(tags={'x': {'nested': 'no'}}), 'tags', id='tag-object'),
    pytest.param(_with(shared_span=True), 'unknown field', id='unknown-top-level'),
    pytest.param(_with(binaryAnnotations=[]), 'unknown field', id='zipkin-v1-field'),
])
def test_each_mistake_is_reported_against_its_field(span: dict[str, Any], field: str) -> None:
    errors = validate_span(span)
    assert errors, 'expected the span to be rejected'
    assert any(error.startswith(field) for error in errors), errors


@pytest.mark.parametrize('value', [
    pytest.param(None, id='null'),
    pytest.param([], id='list'),
    pytest.param('span', id='string'),
    pytest.param(42, id='number'),
])
def test_a_span_that_is_not_an_object_is_rejected(value: Any) -> None:
    assert validate_span(value) == [f'span: must be an object, got {value!r}']


def test_every_error_is_listed_not_only_the_first() -> None:
    errors = validate_span({'traceId': 'x', 'id': 'y', 'kind': 'RPC', 'duration': 0})
    assert [error.split(':')[0] for error in errors] == ['traceId', 'id', 'kind', 'duration']


def test_long_bad_values_are_shortened_in_messages() -> None:
    (error,) = validate_span(_with(name='n', kind='K' * 10_000))
    assert len(error) < 200


@pytest.mark.parametrize('body,expected', [
    pytest.param([], [], id='empty-list'),
    pytest.param([VALID, VALID], [], id='two-valid'),
    pytest.param([VALID, _with(kind=None)], ['spans[1]: kind:'], id='second-bad'),
    pytest.param({'spans': []}, ['body: must be a JSON array'], id='object-body'),
    pytest.param([None], ['spans[0]: span: must be an object'], id='null-span'),
])
def test_validate_spans_prefixes_the_index(body: Any, expected: list[str]) -> None:
    errors = validate_spans(body)
    assert len(errors) == len(expected)
    for error, prefix in zip(errors, expected):
        assert error.startswith(prefix), error


def test_the_check_never_raises_on_odd_json() -> None:
    weird = {'traceId': ['5af7183fb1d4cf5f'], 'id': {'x': 1}, 'tags': {'k': ['v']},
             'annotations': [[], None, {'timestamp': None, 'value': None}],
             'localEndpoint': {'port': True, 'ipv6': 12, 'serviceName': None}}
    assert len(validate_span(weird)) == 10
