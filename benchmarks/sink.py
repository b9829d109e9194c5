"""A counting span sink: the "live collector on loopback" every exporting benchmark posts to.

It runs in its own process (``python benchmarks/sink.py``), prints its port on the first
line of standard output and then serves HTTP/1.1 with keep-alive on 127.0.0.1:

* ``POST <any path>``: reads the whole body (``Content-Length`` or chunked), counts the
  spans in it and answers ``202 Accepted``. The answer is sent only after the spans were
  counted, so an exporter's successful flush means the count includes its spans.
* ``POST .../v1/traces`` (OTLP/HTTP): the same, answered ``200 OK`` with an empty
  ``ExportTraceServiceResponse`` (protobuf, or ``{}`` for JSON).
* ``GET /count``: ``{"spans": N, "posts": N, "bytes": N}`` as JSON.

Why not the package's ``ZipkinCollector``: that one validates every span against the
Zipkin v2 schema, which costs CPU on the same two cores the benchmark measures. This sink
only counts: every Zipkin v2 JSON span, ours and OpenTelemetry's, has exactly one
``"traceId"`` key, so ``body.count(b'"traceId"')`` (one C-level scan) is the span count;
so has every OTLP/JSON span (the benchmarks' spans carry no links). An OTLP protobuf body
(``Content-Type: application/x-protobuf``) is walked field by field down to the spans
(:func:`_otlp_protobuf_spans`), without decoding them. Gzip bodies are decompressed first.
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import sys
import threading

_COUNTS = {'spans': 0, 'posts': 0, 'bytes': 0}
_LOCK = threading.Lock()
_ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n'
_OTLP_OK_PROTOBUF = (b'HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n'
                     b'Content-Length: 0\r\n\r\n')
_OTLP_OK_JSON = (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                 b'Content-Length: 2\r\n\r\n{}')


def _varint(body: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _messages(body: bytes, start: int, end: int, field: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each length-delimited ``field`` in ``body[start:end]``."""
    found = []
    at = start
    while at < end:
        key, at = _varint(body, at)
        wire = key & 7
        if wire == 0:
            _, at = _varint(body, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = _varint(body, at)
            if key >> 3 == field:
                found.append((at, at + length))
            at += length
        else:
            raise ValueError(f'unexpected protobuf wire type {wire}')
    return found


def _otlp_protobuf_spans(body: bytes) -> int:
    """Spans in an ``ExportTraceServiceRequest``: resource_spans (1) -> scope_spans (2)
    -> spans (2)."""
    return sum(len(_messages(body, *scope, 2))
               for resource in _messages(body, 0, len(body), 1)
               for scope in _messages(body, *resource, 2))


def _read_chunked(stream) -> bytes:
    parts = []
    while True:
        size = int(stream.readline(1024).split(b';', 1)[0].strip() or b'0', 16)
        if size == 0:
            while stream.readline(1024) not in (b'\r\n', b'\n', b''):
                pass
            return b''.join(parts)
        parts.append(stream.read(size))
        stream.readline(1024)


def _serve(conn: socket.socket) -> None:
    stream = conn.makefile('rb')
    try:
        while True:
            request_line = stream.readline(65536)
            if not request_line:
                return
            method, _, rest = request_line.partition(b' ')
            path = rest.split(b' ', 1)[0]
            length = 0
            chunked = gzipped = protobuf = False
            while True:
                line = stream.readline(65536)
                if not line:
                    return
                if line in (b'\r\n', b'\n'):
                    break
                name, _, value = line.partition(b':')
                name = name.strip().lower()
                if name == b'content-length':
                    length = int(value)
                elif name == b'transfer-encoding' and b'chunked' in value.lower():
                    chunked = True
                elif name == b'content-encoding' and b'gzip' in value.lower():
                    gzipped = True
                elif name == b'content-type' and b'protobuf' in value.lower():
                    protobuf = True
            body = _read_chunked(stream) if chunked else stream.read(length)
            if method == b'GET' and path == b'/count':
                with _LOCK:
                    payload = json.dumps(_COUNTS).encode()
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                             b'Content-Length: %d\r\n\r\n%s' % (len(payload), payload))
                continue
            if gzipped:
                body = gzip.decompress(body)
            spans = _otlp_protobuf_spans(body) if protobuf else body.count(b'"traceId"')
            with _LOCK:
                _COUNTS['spans'] += spans
                _COUNTS['posts'] += 1
                _COUNTS['bytes'] += len(body)
            if path.endswith(b'/v1/traces'):
                conn.sendall(_OTLP_OK_PROTOBUF if protobuf else _OTLP_OK_JSON)
            else:
                conn.sendall(_ACCEPTED)
    except (OSError, ValueError):
        return
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--port', type=int, default=0)
    args = parser.parse_args()
    listener = socket.create_server(('127.0.0.1', args.port), backlog=128)
    print(listener.getsockname()[1], flush=True)
    sys.stdout.close()
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == '__main__':
    main()
