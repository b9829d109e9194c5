"""Framing a batch: the body each format builds, for every batch size, is the one it means.

The framing joins large batches chunk by chunk (``export/_framing.py``); these tests
check the result against the plain construction and, for OTLP, against the official
protobuf and JSON decoders, on both sides of the chunk size.
"""

from __future__ import annotations

import json

import pytest

from falcon_tracing_wsgi.export import _framing
from falcon_tracing_wsgi.export.file import frame_json_lines
from falcon_tracing_wsgi.export.http import frame_json_array
from falcon_tracing_wsgi.export.otlp import JsonEncoder, ProtobufEncoder
from falcon_tracing_wsgi.export.pipeline import _frame_json_array
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder

from ..otlp import decode_json, decode_protobuf
from ..spans import make_span

CHUNK = _framing.CHUNK
#: Batch sizes around the chunk size, and one of several chunks with a short last one.
COUNTS = [0, 1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 3]
RESOURCE = {'service.name': 'backend', 'host.name': 'box-1'}


def _texts(count: int) -> list[str]:
    # Pieces of different lengths, so a misplaced separator or chunk shows.
    return [json.dumps({'i': index, 'pad': 'x' * (index % 7)}) for index in range(count)]


@pytest.mark.parametrize('count', COUNTS)
@pytest.mark.parametrize('head,separator,tail', [('[', ',', ']'), ('', '\n', '\n'),
                                                 ('{"a":[', ', ', ']}'), ('', '', '')])
def test_join_text_is_the_plain_join(count, head, separator, tail):
    pieces = _texts(count)
    assert _framing.join_text(pieces, head, separator, tail) == \
        (head + separator.join(pieces) + tail).encode()


@pytest.mark.parametrize('count', COUNTS)
def test_join_bytes_is_the_plain_join(count):
    pieces = [bytes([index % 256]) * (index % 5 + 1) for index in range(count)]
    assert _framing.join_bytes(b'head', pieces) == b'head' + b''.join(pieces)


@pytest.mark.parametrize('count', [count for count in COUNTS if count])
@pytest.mark.parametrize('frame', [
    pytest.param(frame_json_array, id='http.frame_json_array'),
    pytest.param(JsonV2Encoder(Endpoint('svc')).frame, id='zipkin'),
    # the pipeline's default framing, for encoders without frame()
    pytest.param(_frame_json_array, id='pipeline-default'),
])
def test_json_array_frames(count, frame):
    pieces = _texts(count)
    assert json.loads(frame(pieces)) == [json.loads(piece) for piece in pieces]


@pytest.mark.parametrize('count', COUNTS)
def test_json_lines_frame(count):
    pieces = _texts(count)
    body = frame_json_lines(pieces)
    assert body == b''.join(piece.encode() + b'\n' for piece in pieces)


@pytest.mark.parametrize('count', [count for count in COUNTS if count])
def test_otlp_frames_decode_to_every_span(count):
    spans = [make_span(index) for index in range(count)]
    ids = [span.context.span_id for span in spans]
    protobuf = ProtobufEncoder(RESOURCE, '1.0')
    message = decode_protobuf(protobuf.frame([protobuf.encode(span) for span in spans]))
    json_encoder = JsonEncoder(RESOURCE, '1.0')
    from_json = decode_json(json_encoder.frame([json_encoder.encode(span) for span in spans]))
    for decoded in (message, from_json):
        (resource_spans,) = decoded.resource_spans
        assert {item.key: item.value.string_value
                for item in resource_spans.resource.attributes} == RESOURCE
        (scope_spans,) = resource_spans.scope_spans
        assert scope_spans.scope.version == '1.0'
        assert [span.span_id.hex() for span in scope_spans.spans] == ids
