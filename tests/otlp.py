"""Decoding what the OTLP encoders send, with the official ``opentelemetry-proto`` messages.

The protobuf body is parsed by ``ExportTraceServiceRequest.ParseFromString``; the JSON
body by ``google.protobuf.json_format.Parse`` after turning OTLP/JSON's hex ids into the
base64 that proto3's JSON mapping expects (OTLP's one deviation ``json_format`` does not
know; integer enums and 64-bit integers as strings it accepts as they are). Both give the
same message type, so a test can check one expectation against both encodings and that
the two encodings say the same thing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ['decode_protobuf', 'decode_json', 'decode', 'summary', 'any_value',
           'ExportTraceServiceRequest', 'ExportTraceServiceResponse']

_ID_KEYS = ('traceId', 'spanId', 'parentSpanId')


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)  # raises DecodeError on anything malformed
    return message


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                assert value == value.lower(), f'{key} must be lower-case hex: {value!r}'
                out[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ''
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    text = body.decode('ascii')  # the encoder promises pure ASCII
    document = json.loads(text)
    message = ExportTraceServiceRequest()
    json_format.Parse(json.dumps(_hex_ids_to_base64(document)), message)
    return message


def decode(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    if content_type == 'application/x-protobuf':
        return decode_protobuf(body)
    assert content_type == 'application/json', content_type
    return decode_json(body)


def any_value(value: AnyValue) -> Any:
    """An AnyValue as a (type, value) pair."""
    which = value.WhichOneof('value')
    return (which, getattr(value, which)) if which else (None, None)


def attributes(items: Any) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in items}


def summary(span: Any) -> dict[str, Any]:
    """A decoded Span as plain data, for comparisons that read well."""
    return {
        'trace_id': span.trace_id.hex(), 'span_id': span.span_id.hex(),
        'parent_span_id': span.parent_span_id.hex(), 'trace_state': span.trace_state,
        'name': span.name, 'kind': span.kind, 'start': span.start_time_unix_nano,
        'end': span.end_time_unix_nano, 'attributes': attributes(span.attributes),
        'events': [(event.time_unix_nano, event.name, attributes(event.attributes))
                   for event in span.events],
        'links': [(link.trace_id.hex(), link.span_id.hex(), link.trace_state,
                   attributes(link.attributes), link.flags) for link in span.links],
        'status': (span.status.code, span.status.message), 'flags': span.flags,
    }
