"""A strict check of Zipkin v2 JSON spans, written from Zipkin's own API definition.

The rules are those of the ``Span``, ``Endpoint`` and ``Annotation`` definitions in
Zipkin's ``zipkin2-api.yaml`` (OpenAPI 2), written out here in code so that the check has
no dependency and reads no file at run time. The test collector
(:mod:`falcon_tracing_wsgi.zipkin.collector`) uses it to reject bad payloads the way a
real Zipkin server does, and the tests use it on everything the encoder produces.

Where the API definition is loose, the check is deliberately *stricter* than a Zipkin
server, because its job is to catch our own encoding mistakes:

* ``null`` is never accepted as a value: Zipkin says "leave absent if unknown", so a
  present key must carry a real value (a ``"kind": null`` is an encoding bug).
* Ids must be lower-case hex of their exact width **and not all zeros** (an all-zero id
  means "no id" in B3 and Zipkin).
* ``timestamp`` (span and annotation) must be an integer in epoch **microseconds**
  between 2000-01-01 and 2100-01-01: a value in seconds or milliseconds is the classic
  unit bug and falls outside that range.
* Unknown fields are errors, at the top level and inside endpoints and annotations.
* ``annotations`` must be unique (``uniqueItems`` in the definition).
* ``ipv6`` must be a bare address (no ``%scope``); ``ipv4`` a dotted quad without
  leading zeros.

Every function returns a list of human-readable errors, empty when the input is valid,
and never raises for any JSON-like input. It shares no code with the encoder on purpose
(the address rules are written twice): a shared helper with a bug would let the encoder's
mistake pass its own check.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

__all__ = ['validate_span', 'validate_spans', 'SPAN_FIELDS', 'ENDPOINT_FIELDS', 'KINDS']

#: The fields a Zipkin v2 span may have.
SPAN_FIELDS = frozenset(('traceId', 'id', 'parentId', 'name', 'kind', 'timestamp',
                         'duration', 'debug', 'shared', 'localEndpoint', 'remoteEndpoint',
                         'annotations', 'tags'))
#: The fields an endpoint may have.
ENDPOINT_FIELDS = frozenset(('serviceName', 'ipv4', 'ipv6', 'port'))
#: The values of ``kind``.
KINDS = frozenset(('CLIENT', 'SERVER', 'PRODUCER', 'CONSUMER'))

_ANNOTATION_FIELDS = frozenset(('timestamp', 'value'))
_TRACE_ID = re.compile(r'[0-9a-f]{16}(?:[0-9a-f]{16})?')
_SPAN_ID = re.compile(r'[0-9a-f]{16}')
_DOTTED_QUAD = re.compile(r'(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}'
                          r'(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)')
_MIN_EPOCH_MICROS = 946_684_800_000_000    # 2000-01-01T00:00:00Z
_MAX_EPOCH_MICROS = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z
_INT64_MAX = 2 ** 63 - 1
_SHOWN = 60  # characters of a bad value quoted in an error


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + '...'


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id(errors: list[str], where: str, value: Any, pattern: re.Pattern[str],
              widths: str) -> None:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        errors.append(f'{where}: must be {widths} lower-case hex characters, '
                      f'got {_show(value)}')
    elif value.count('0') == len(value):
        errors.append(f'{where}: must not be all zeros')


def _check_epoch_micros(errors: list[str], where: str, value: Any) -> None:
    if not _is_int(value):
        errors.append(f'{where}: must be an integer (epoch microseconds), got {_show(value)}')
    elif not _MIN_EPOCH_MICROS <= value < _MAX_EPOCH_MICROS:
        errors.append(f'{where}: {value} is not epoch microseconds between 2000 and 2100 '
                      f'(seconds or milliseconds?)')


def _check_endpoint(errors: list[str], where: str, value: Any) -> None:
    if not isinstance(value, dict):
        errors.append(f'{where}: must be an object, got {_show(value)}')
        return
    for key in value:
        if key not in ENDPOINT_FIELDS:
            errors.append(f'{where}: unknown field {_show(key)}')
    if 'serviceName' in value and not isinstance(value['serviceName'], str):
        errors.append(f'{where}.serviceName: must be a string, '
                      f'got {_show(value["serviceName"])}')
    if 'ipv4' in value:
        ipv4 = value['ipv4']
        if not isinstance(ipv4, str) or _DOTTED_QUAD.fullmatch(ipv4) is None:
            errors.append(f'{where}.ipv4: must be a dotted quad such as "192.168.99.100", '
                          f'got {_show(ipv4)}')
    if 'ipv6' in value:
        ipv6 = value['ipv6']
        ok = isinstance(ipv6, str) and '%' not in ipv6 and ipv6.isascii()
        if ok:
            try:
                ipaddress.IPv6Address(ipv6)
            except ValueError:
                ok = False
        if not ok:
            errors.append(f'{where}.ipv6: must be an IPv6 address such as "2001:db8::c001", '
                          f'got {_show(ipv6)}')
    if 'port' in value:
        port = value['port']
        if not _is_int(port) or not 0 < port < 65536:
            errors.append(f'{where}.port: must be an integer in 1..65535, got {_show(port)}')


def _check_annotations(errors: list[str], value: Any) -> None:
    if not isinstance(value, list):
        errors.append(f'annotations: must be an array, got {_show(value)}')
        return
    seen = set()
    for index, item in enumerate(value):
        where = f'annotations[{index}]'
        if not isinstance(item, dict):
            errors.append(f'{where}: must be an object, got {_show(item)}')
            continue
        for key in item:
            if key not in _ANNOTATION_FIELDS:
                errors.append(f'{where}: unknown field {_show(key)}')
        if 'timestamp' not in item:
            errors.append(f'{where}.timestamp: required')
        else:
            _check_epoch_micros(errors, f'{where}.timestamp', item['timestamp'])
        if 'value' not in item:
            errors.append(f'{where}.value: required')
        elif not isinstance(item['value'], str):
            errors.append(f'{where}.value: must be a string, got {_show(item["value"])}')
        key = (repr(item.get('timestamp')), repr(item.get('value')))
        if key in seen:
            errors.append(f'{where}: duplicate annotation (annotations must be unique)')
        seen.add(key)


def _check_tags(errors: list[str], value: Any) -> None:
    if not isinstance(value, dict):
        errors.append(f'tags: must be an object, got {_show(value)}')
        return
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(f'tags: key {_show(key)} is not a string')
        elif not isinstance(item, str):
            errors.append(f'tags[{_show(key)}]: must be a string, got {_show(item)}')


def validate_span(obj: Any) -> list[str]:
    """Check one Zipkin v2 span (a decoded JSON object).

    Args:
        obj: the span as decoded by :func:`json.loads`.

    Returns:
        The errors found, each naming the field; an empty list when the span is valid.
    """
    if not isinstance(obj, dict):
        return [f'span: must be an object, got {_show(obj)}']
    errors: list[str] = []
    for key in obj:
        if key not in SPAN_FIELDS:
            errors.append(f'unknown field {_show(key)}')
    if 'traceId' not in obj:
        errors.append('traceId: required')
    else:
        _check_id(errors, 'traceId', obj['traceId'], _TRACE_ID, '16 or 32')
    if 'id' not in obj:
        errors.append('id: required')
    else:
        _check_id(errors, 'id', obj['id'], _SPAN_ID, '16')
    if 'parentId' in obj:
        _check_id(errors, 'parentId', obj['parentId'], _SPAN_ID, '16')
    if 'name' in obj and not isinstance(obj['name'], str):
        errors.append(f'name: must be a string, got {_show(obj["name"])}')
    if 'kind' in obj and obj['kind'] not in KINDS:
        errors.append(f'kind: must be one of CLIENT, SERVER, PRODUCER, CONSUMER or absent, '
                      f'got {_show(obj["kind"])}')
    if 'timestamp' in obj:
        _check_epoch_micros(errors, 'timestamp', obj['timestamp'])
    if 'duration' in obj:
        duration = obj['duration']
        if not _is_int(duration) or not 1 <= duration <= _INT64_MAX:
            errors.append(f'duration: must be an integer >= 1 (microseconds), '
                          f'got {_show(duration)}')
    for flag in ('debug', 'shared'):
        if flag in obj and not isinstance(obj[flag], bool):
            errors.append(f'{flag}: must be true or false, got {_show(obj[flag])}')
    for endpoint in ('localEndpoint', 'remoteEndpoint'):
        if endpoint in obj:
            _check_endpoint(errors, endpoint, obj[endpoint])
    if 'annotations' in obj:
        _check_annotations(errors, obj['annotations'])
    if 'tags' in obj:
        _check_tags(errors, obj['tags'])
    return errors


def validate_spans(spans: Any) -> list[str]:
    """Check a list of spans, the body of ``POST /api/v2/spans``.

    Args:
        spans: the decoded JSON body.

    Returns:
        The errors found, each prefixed with the span's index (``spans[3]: traceId: ...``);
        an empty list when every span is valid.
    """
    if not isinstance(spans, list):
        return [f'body: must be a JSON array of spans, got {_show(spans)}']
    errors: list[str] = []
    for index, span in enumerate(spans):
        errors.extend(f'spans[{index}]: {error}' for error in validate_span(span))
    return errors
