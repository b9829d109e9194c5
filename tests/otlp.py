"""Decoding what the OTLP encoders send, with the official ``opentelemetry-proto`` messages,
and a small OTLP/HTTP receiver that does so (:class:`OtlpReceiver`).

The protobuf body is parsed by ``ExportTraceServiceRequest.ParseFromString``; the JSON
body by ``google.protobuf.json_format.Parse`` after turning OTLP/JSON's hex ids into the
base64 that proto3's JSON mapping expects (OTLP's one deviation ``json_format`` does not
know; integer enums and 64-bit integers as strings it accepts as they are). Both give the
same message type, so a test can check one expectation against both encodings and that
the two encodings say the same thing.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ['decode_protobuf', 'decode_json', 'decode', 'summary', 'any_value',
           'ExportTraceServiceRequest', 'ExportTraceServiceResponse', 'OtlpReceiver',
           'Reply', 'Received']

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


# --------------------------------------------------------------------------- a receiver

class Reply(NamedTuple):
    """A scripted answer to the next export request."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    rejected: int = 0  # > 0: a 200 with partial_success.rejected_spans
    message: str = ''


class Received(NamedTuple):
    """One export request the receiver accepted (answered 200)."""

    headers: dict[str, str]  # header names lower-cased
    request: Any  # ExportTraceServiceRequest
    at: float  # time.monotonic() when it arrived


class OtlpReceiver:
    """A small OTLP/HTTP receiver on 127.0.0.1 (a free port) for tests.

    It follows the OTLP/HTTP specification where a client can tell: ``POST /v1/traces``
    only (404 otherwise); ``Content-Type`` ``application/x-protobuf`` or
    ``application/json`` (415 otherwise), answered in the same type; ``Content-Encoding:
    gzip`` decoded; a body that does not decode is a 400; success is a 200 with an
    ``ExportTraceServiceResponse`` (``partial_success`` set when scripted); a failure
    carries a ``Status`` message. :meth:`script` queues answers for the next requests
    (each request records its arrival time, also when it is refused). Bounded: bodies
    over 16 MiB get 413, :meth:`stop` joins the thread with a timeout. With an
    ``ssl_context`` it serves https.
    """

    def __init__(self, ssl_context: Any = None) -> None:
        self._lock = threading.Condition()
        self._script: list[Reply] = []
        self.received: list[Received] = []
        self.attempts: list[float] = []  # arrival times of every POST /v1/traces
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            timeout = 10

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, content_type: str,
                        headers: tuple[tuple[str, str], ...] = ()) -> None:
                self.send_response(status)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get('Content-Length') or 0)
                if length > 16 * 1024 * 1024:
                    self.close_connection = True
                    self._answer(413, b'', 'text/plain')
                    return
                raw = self.rfile.read(length)
                if self.path != '/v1/traces':
                    self._answer(404, b'', 'text/plain')
                    return
                content_type = (self.headers.get('Content-Type') or '').split(';')[0].strip()
                if content_type not in (PROTOBUF, JSON):
                    self._answer(415, b'', 'text/plain')
                    return
                with receiver._lock:
                    receiver.attempts.append(time.monotonic())
                    reply = receiver._script.pop(0) if receiver._script else Reply()
                    receiver._lock.notify_all()
                if reply.status != 200:
                    self._answer(reply.status, _status_body(content_type, 'scripted'),
                                 content_type, reply.headers)
                    return
                try:
                    body = raw
                    if (self.headers.get('Content-Encoding') or '').lower() == 'gzip':
                        body = gzip.decompress(raw)
                    request = decode(body, content_type)
                except Exception as exc:  # a bad request, as a collector would see it
                    self._answer(400, _status_body(content_type, str(exc)), content_type)
                    return
                with receiver._lock:
                    receiver.received.append(Received(
                        {k.lower(): v for k, v in self.headers.items()}, request,
                        time.monotonic()))
                    receiver._lock.notify_all()
                response = ExportTraceServiceResponse()
                if reply.rejected or reply.message:
                    response.partial_success.rejected_spans = reply.rejected
                    response.partial_success.error_message = reply.message
                answer = (response.SerializeToString() if content_type == PROTOBUF
                          else json_format.MessageToJson(response).encode())
                self._answer(200, answer, content_type, reply.headers)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a refused TLS handshake is what some tests are about

        self._server = Server(('127.0.0.1', 0), Handler)
        self._server.daemon_threads = True
        self._scheme = 'http'
        if ssl_context is not None:  # the handshake happens on the handler's thread
            self._server.socket = ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False)
            self._scheme = 'https'
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f'{self._scheme}://127.0.0.1:{self.port}'

    @property
    def url(self) -> str:
        return self.base_url + '/v1/traces'

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def spans(self) -> list[Any]:
        with self._lock:
            return [span for item in self.received for rs in item.request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                spans = [span for item in self.received
                         for rs in item.request.resource_spans
                         for ss in rs.scope_spans for span in ss.spans]
                remaining = deadline - time.monotonic()
                if len(spans) >= count or remaining <= 0:
                    return spans
                self._lock.wait(remaining)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


PROTOBUF = 'application/x-protobuf'
JSON = 'application/json'


def _status_body(content_type: str, message: str) -> bytes:
    """A google.rpc.Status with only ``message`` (field 2), in the request's encoding."""
    if content_type == JSON:
        return json.dumps({'message': message}).encode()
    data = message.encode()[:100]
    return b'\x12' + bytes((len(data),)) + data
