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


# -- the reused body storage (BodyBuffer) ----------------------------------------------------

def test_bodies_written_into_one_reused_buffer_are_the_plain_join():
    # One buffer through every count, shape and size, in turn: each body is compared while
    # it is current (the next one may overwrite it), whether it was written into the
    # storage, made the plain way, grown or released.
    buffer = _framing.BodyBuffer()
    shapes = [('[', ',', ']'), ('', '\n', '\n'), ('{"a":[', ', ', ']}'), ('', '', '')]
    for count in COUNTS + list(reversed(COUNTS)):
        for head, separator, tail in shapes:
            pieces = _texts(count)
            body = _framing.join_text(pieces, head, separator, tail, buffer)
            assert bytes(body) == (head + separator.join(pieces) + tail).encode()
        pieces = [bytes([index % 256]) * (index % 5 + 1) for index in range(count)]
        assert bytes(_framing.join_bytes(b'head', pieces, buffer)) == \
            b'head' + b''.join(pieces)


@pytest.mark.parametrize('count', [CHUNK + 1, 3 * CHUNK])
@pytest.mark.parametrize('where', [0, -1])
def test_a_piece_that_is_not_ascii_is_joined_right_with_the_buffer(count, where):
    # Its length is not its size in UTF-8: the storage is sized from what the chunks
    # really take, so the body is still right.
    buffer = _framing.BodyBuffer()
    pieces = _texts(count)
    pieces[where] = '{"name":"caf\u00e9 \u2603"}'
    body = _framing.join_text(pieces, '[', ',', ']', buffer)
    assert bytes(body) == ('[' + ','.join(pieces) + ']').encode()


@pytest.mark.parametrize('steps', [
    # (pieces, width of each) in turn -> whether the body came from the storage, and what
    # became of the storage: 'new' (none before), 'kept' (the same), 'grown' (new and
    # larger), 'released' (none held after)
    pytest.param([(2 * CHUNK, 100, True, 'new'), (2 * CHUNK, 100, True, 'kept')],
                 id='the same size again reuses the storage'),
    pytest.param([(2 * CHUNK, 100, True, 'new'), (2 * CHUNK, 110, True, 'kept')],
                 id='a little larger still fits'),
    pytest.param([(2 * CHUNK, 100, True, 'new'), (4 * CHUNK, 100, True, 'grown')],
                 id='a larger body grows it'),
    pytest.param([(4 * CHUNK, 100, True, 'new'), (2 * CHUNK, 100, True, 'kept')],
                 id='half the size keeps it'),
    pytest.param([(8 * CHUNK, 100, True, 'new'), (CHUNK + 1, 100, False, 'released')],
                 id='under a quarter of it releases it'),
    pytest.param([(2 * CHUNK, 100, True, 'new'), (CHUNK, 100, False, 'released')],
                 id='a small batch releases it'),
    pytest.param([(2 * CHUNK, 100, True, 'new'), (CHUNK, 100, False, 'released'),
                  (3 * CHUNK, 100, True, 'new')],
                 id='released, then taken again'),
])
def test_the_storage_is_kept_while_bodies_are_large_and_released_when_they_are_not(steps):
    buffer = _framing.BodyBuffer()
    for count, width, stored, storage in steps:
        held = buffer.capacity
        pieces = ['x' * width] * count
        body = _framing.join_text(pieces, '[', ',', ']', buffer)
        assert bytes(body) == ('[' + ','.join(pieces) + ']').encode()
        assert (type(body) is memoryview) is stored
        if storage == 'released':
            assert buffer.capacity == 0
        elif storage == 'kept':
            assert buffer.capacity == held
        else:
            assert buffer.capacity > held
            # a quarter to spare (the estimate from the first chunk may be a byte over)
            assert len(body) * 5 // 4 <= buffer.capacity <= (len(body) + 4) * 5 // 4


def test_a_body_larger_than_its_first_chunk_said_grows_the_storage_and_is_whole():
    # The storage is sized from the first chunk's bytes per piece: later, longer pieces
    # (or pieces that are not ASCII) need more, and get it, with what was written kept.
    buffer = _framing.BodyBuffer()
    pieces = ['s' * 10] * CHUNK + ['L' * 900] * (3 * CHUNK) + ['caf\u00e9'] * 5
    body = _framing.join_text(pieces, '[', ',', ']', buffer)
    assert type(body) is memoryview
    assert bytes(body) == ('[' + ','.join(pieces) + ']').encode()
    assert buffer.capacity >= len(body)


def test_a_body_handed_out_stays_intact_when_the_storage_is_replaced():
    # A larger body gets new storage (a bytearray with exports cannot be resized): a
    # body still referenced (a send in progress elsewhere, an exception's frame) keeps
    # its bytes; release() does not touch it either.
    buffer = _framing.BodyBuffer()
    small = _texts(2 * CHUNK)
    body = _framing.join_text(small, '[', ',', ']', buffer)
    expected = ('[' + ','.join(small) + ']').encode()
    larger = _texts(6 * CHUNK)
    assert bytes(_framing.join_text(larger, '[', ',', ']', buffer)) == \
        ('[' + ','.join(larger) + ']').encode()
    assert bytes(body) == expected
    buffer.release()
    assert buffer.capacity == 0
    assert bytes(body) == expected
