"""OTLP encoding of finished spans (OpenTelemetry's wire format): pure, no I/O, no SDK.

Two encoders, one per OTLP/HTTP content type, with the same mapping:

* :class:`ProtobufEncoder` (``http/protobuf``, ``application/x-protobuf``): a hand-written
  proto3 writer for exactly the messages ``ExportTraceServiceRequest`` needs
  (``opentelemetry/proto/collector/trace/v1/trace_service.proto`` and the ``trace``,
  ``common`` and ``resource`` protos it imports). No ``protobuf`` runtime is needed.
* :class:`JsonEncoder` (``http/json``, ``application/json``): proto3's JSON mapping with
  OTLP's deviations: ids are lower-case **hex** (not base64), enums are integers, 64-bit
  integers (times, ``intValue``) are decimal strings, names are lowerCamelCase.

The pipeline contract (:mod:`.pipeline`): ``encode(span)`` turns one finished span into a
*piece* (``bytes`` for protobuf, ``str`` for JSON), or ``None`` when the span breaks the
Span contract and must be dropped; ``frame(pieces)`` wraps a batch's pieces into one
``ExportTraceServiceRequest`` body::

    ExportTraceServiceRequest
      resource_spans[0]: ResourceSpans
        resource: Resource (service.name, telemetry.sdk.*, process.pid, host.name, ...)
        scope_spans[0]: ScopeSpans
          scope: InstrumentationScope (this package, its version)
          spans: the pieces

Design (for speed, because encoding is most of a reporter's CPU cost):

* A protobuf piece is the ``spans`` field *with its tag and length* (``0x12 len Span``),
  so framing is one ``b''.join`` inside a prefix whose only variable parts are the two
  enclosing lengths; the resource and scope bytes are built once (again only when the
  process id changes: a forked child reports its own ``process.pid``).
* The ids, with their field tags, are turned into bytes by one ``bytes.fromhex`` call,
  which also checks them: a span whose ids are not hex of their wire width gives ``None``.
  A 64-bit trace id is padded with zeros on the left to OTLP's 16 bytes.
* As in the Zipkin encoder, each attribute's finished bytes (or JSON text) are cached
  per (key, value) for values that repeat (``component``, ``http.method``,
  ``http.status_code``, ...), in bounded caches; span names are cached likewise.
* **The wrapper's server span** (:class:`~falcon_tracing_wsgi.tracer.span.ServerSpan`,
  OpenTracing's tag names) with no tags, logs or references set through the API is
  written by the protobuf encoder from its fields, never through the merged tag dict
  (which costs as much to build as to encode): the bytes a route's requests share
  (name, component, method, status, route and route tags, kind, an ERROR status for a
  5xx) are made once per shape, and a peer's, a port's and a response size's fields once
  per value (bounded caches). The result is the same bytes in the same order as the
  general path gives for the merged tags (a test compares the two for every case);
  anything unusual (a route tag named as a field, a negative port) takes the general
  path. Measured with ``benchmarks/bench_instructions.py``: 22k instructions per
  request less than the general path.

Each encoder also reads the collector's answer (``read_response``): an
``ExportTraceServiceResponse`` whose ``partial_success.rejected_spans`` is positive gives a
:class:`~falcon_tracing_wsgi._types.PartialSuccess` (the pipeline counts those spans as
failed and does not retry); anything else, unreadable answers included, is ``None``.

Mapping from OpenTracing (OpenTelemetry's OpenTracing compatibility specification):

* ``span.kind`` (``server``/``client``/``producer``/``consumer``, any case) becomes the
  span kind and is not repeated as an attribute; absent or unknown, the kind is
  ``INTERNAL`` (an unknown value stays an attribute).
* ``error``: ``True`` (or ``"true"``) sets the status to ``ERROR``, ``False`` (or
  ``"false"``) to ``OK``; the tag is then not repeated as an attribute. A *server* span
  whose ``http.status_code`` is a 4xx keeps its status unset even so (the HTTP semantic
  conventions: the client erred, not the server). An ``ERROR`` status carries the first
  exception's ``type: message``.
* Every other tag becomes an attribute of its own type: ``str``, ``bool``, ``int``
  (int64; a larger one becomes a string) and ``float``; anything else becomes a string
  (``str()``, or a placeholder when that fails).
* Logs become events named by their ``event`` field (else ``"log"``), with the other
  fields as attributes. An ``event=error`` log becomes an ``exception`` event:
  ``error.kind`` -> ``exception.type``, ``message`` -> ``exception.message``,
  ``stack`` -> ``exception.stacktrace``, and an ``error.object`` exception fills in
  whichever of the three is missing (type name, ``str()``, formatted traceback).
* The parent id is ``parent_span_id``; ``span.references`` (the references the tracer
  kept: every reference but a ``CHILD_OF`` parent) become links with the attribute
  ``opentracing.ref_type`` = ``child_of`` or ``follows_from``, carrying the referenced
  context's ``tracestate``.
* The W3C ``tracestate`` of the span's context is ``trace_state``; ``flags`` holds the
  sampled bit (only sampled spans are exported).
* Times: an epoch time in float seconds is precise to about 0.2 microseconds, so start
  and event times are written in whole microseconds (times 1000: no invented digits);
  the duration, measured with ``perf_counter``, keeps its nanoseconds.
* Strings (names, attribute values, event names) are cut to ``max_value_length``
  characters, as the Zipkin encoder does; the encoders never raise for bad values.
"""

from __future__ import annotations

import json
import struct
import traceback
import types
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring_ascii as _c_escape
from typing import Any, Callable, Iterator, Optional, Union, cast

from .._keys import TAG_ABORTED, TAG_RESPONSE_SIZE, TAG_ROUTE
from .._types import PartialSuccess
from .. import _semconv as semconv
from ..tracer.span import SERVER_FIELD_TAGS, STABLE_FIELD_TAGS, ServerSpan, StableServerSpan
from ._framing import Body, BodyBuffer, join_bytes, join_text

__all__ = ['ProtobufEncoder', 'JsonEncoder', 'PROTOBUF_CONTENT_TYPE', 'JSON_CONTENT_TYPE',
           'DEFAULT_MAX_VALUE_LENGTH', 'SCOPE_NAME', 'RETRYABLE_STATUSES',
           'read_protobuf_response', 'read_json_response']

PROTOBUF_CONTENT_TYPE = 'application/x-protobuf'
JSON_CONTENT_TYPE = 'application/json'
#: Attribute values, event names and span names longer than this are cut (characters).
DEFAULT_MAX_VALUE_LENGTH = 4096
#: The instrumentation scope of every exported span: this package.
SCOPE_NAME = 'falcon_tracing_wsgi'
#: The HTTP statuses OTLP/HTTP allows a client to retry ("Retryable Response Codes");
#: every other 4xx and 5xx must not be retried.
RETRYABLE_STATUSES = frozenset((429, 502, 503, 504))

# Span.SpanKind
_KINDS = {'server': 2, 'client': 3, 'producer': 4, 'consumer': 5}
_INTERNAL = 1
# Status.StatusCode
_STATUS_OK = 1
_STATUS_ERROR = 2
_SAMPLED_FLAGS = 1  # W3C trace flags, sampled; SpanFlags bits 8-9 (is-remote) unknown: 0
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_UNPRINTABLE = '<unprintable>'
_ABSENT: Any = object()

# Bounds of the caches (as in the Zipkin encoder): a program that invents tag keys or
# values simply stops caching; memory never grows without limit.
_KEY_CACHE_SIZE = 1024
_PAIR_CACHE_KEYS = 64
_PAIR_CACHE_VALUES = 32
_PAIR_CACHE_LENGTH = 128
_NAME_CACHE_SIZE = 256
_SERVER_SHAPES_SIZE = 1024
_PEER_FIELDS_SIZE = 1024
_INT_FIELDS_SIZE = 1024

_SPECIAL_TAGS = frozenset(('span.kind', 'error'))
_REF_TYPES = {'child_of': 'child_of', 'follows_from': 'follows_from'}

Value = Union[str, bool, int, float]
Pairs = list[tuple[str, Value]]
#: (route tags, name field or None: not usable, component and method, status code,
#: route, route tags, kind and status); see ProtobufEncoder._server_shape.
_ServerShape = tuple[Any, Optional[bytes], bytes, bytes, bytes]
#: StableServerSpan's fields written as groups (see ProtobufEncoder._encode_stable).
_SERVER_GROUP = (semconv.SERVER_ADDRESS, semconv.SERVER_PORT, semconv.NETWORK_PEER_ADDRESS)
_CLIENT_GROUP = (semconv.CLIENT_ADDRESS, semconv.NETWORK_PROTOCOL_VERSION,
                 semconv.USER_AGENT)


# --------------------------------------------------------------------------- the mapping
# Shared by both encoders; tags are mapped inline by each encoder (the hot loop), logs,
# links and the resource here (rare, or once).

def _text(value: Any) -> str:
    """Any value as text (never raises)."""
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the span
        return _UNPRINTABLE


def _value(value: Any) -> Value:
    """An attribute value OTLP can carry: str, bool, int64 or float; else its text."""
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, int) and not isinstance(value, bool):  # an int subclass (an enum)
        return _value(int(value))
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return _text(value)


def _exception_fields(fields: Mapping[Any, Any]) -> Pairs:
    """The attributes of the ``exception`` event an ``event=error`` log becomes."""
    attributes: Pairs = []
    error = fields.get('error.object')
    kind = fields.get('error.kind', _ABSENT)
    message = fields.get('message', _ABSENT)
    stack = fields.get('stack', _ABSENT)
    if isinstance(error, BaseException):
        if kind is _ABSENT:
            kind = type(error).__name__
        if message is _ABSENT:
            message = _text(error)
        if stack is _ABSENT and error.__traceback__ is not None:
            try:
                stack = ''.join(traceback.format_exception(
                    type(error), error, error.__traceback__))
            except Exception:
                stack = _ABSENT
    if kind is not _ABSENT:
        attributes.append(('exception.type', _value(kind)))
    if message is not _ABSENT:
        attributes.append(('exception.message', _value(message)))
    if stack is not _ABSENT:
        attributes.append(('exception.stacktrace', _log_value(stack)))
    for key, value in fields.items():
        if key not in ('event', 'error.kind', 'message', 'stack', 'error.object'):
            attributes.append((_text(key), _log_value(value)))
    return attributes


def _log_value(value: Any) -> Value:
    if isinstance(value, types.TracebackType):
        try:
            return ''.join(traceback.format_tb(value))
        except Exception:
            return 'traceback'
    if isinstance(value, BaseException):
        message = _text(value)
        return f'{type(value).__name__}: {message}' if message else type(value).__name__
    return _value(value)


def _events(logs: Iterable[Any]) -> tuple[list[tuple[int, str, Pairs]], Optional[str]]:
    """Logs as ``(time_unix_nano, name, attributes)`` events, and the first exception's
    ``type: message`` (the description of an ERROR status)."""
    events = []
    described: Optional[str] = None
    for record in logs:
        try:
            timestamp, fields = record
            nanos = min(max((timestamp * 1e6).__round__() * 1000, 0), _UINT64_MAX)
        except Exception:  # a malformed log record is skipped, never fatal
            continue
        if not isinstance(fields, Mapping):
            events.append((nanos, 'log', [('message', _value(fields))]))
            continue
        event = fields.get('event', _ABSENT)
        if type(event) is str and event == 'error':
            attributes = _exception_fields(fields)
            if described is None:
                found = dict(attributes)
                kind = found.get('exception.type')
                message = found.get('exception.message')
                if kind is not None or message is not None:
                    described = ': '.join(_text(part) for part in (kind, message)
                                          if part is not None and part != '')
            events.append((nanos, 'exception', attributes))
            continue
        name = 'log' if event is _ABSENT else _text(event)
        events.append((nanos, name, [(_text(key), _log_value(value))
                                     for key, value in fields.items() if key != 'event']))
    return events, described


def _links(references: Iterable[Any]) -> list[tuple[str, str, Optional[str], str]]:
    """References as ``(trace_id32, span_id, tracestate, ref_type)``; bad ones skipped."""
    links = []
    for reference in references:
        try:
            context = reference.referenced_context
            trace_id = context.trace_id
            span_id = context.span_id
            ref_type = _REF_TYPES.get(reference.type)
        except Exception:
            continue
        if type(trace_id) is not str or type(span_id) is not str or ref_type is None:
            continue
        if len(trace_id) == 16:
            trace_id = '0' * 16 + trace_id
        tracestate = getattr(context, 'tracestate', None)
        links.append((trace_id, span_id, tracestate if type(tracestate) is str else None,
                      ref_type))
    return links


def _status(error: Any, kind: int, tags: Mapping[str, Any]) -> int:
    """The status code the ``error`` tag maps to.

    0 means the tag is no boolean: the status stays unset and the tag an attribute; -1
    means a server span's 4xx: the status stays unset and the tag is consumed (written as
    an attribute, a backend would still show the span as failed).
    """
    # NOTE: 'is' and a type test first: a tag value may be anything (an array whose '=='
    # has no truth value must not make the span unencodable).
    if error is True or (type(error) is str and error == 'true'):
        if kind == 2:  # SERVER: a 4xx is the client's error, not this span's
            status = tags.get('http.status_code', tags.get('http.response.status_code'))
            if type(status) is str and status.isdigit():
                status = int(status)
            if type(status) is int and 400 <= status < 500:
                return -1
        return _STATUS_ERROR
    if error is False or (type(error) is str and error == 'false'):
        return _STATUS_OK
    return 0


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


# --------------------------------------------------------------------------- responses

def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]  # IndexError on a truncated message
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError('varint too long')


def _read_fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message; values of wire types 0 and 2 only."""
    at = 0
    end = len(data)
    while at < end:
        key, at = _read_varint(data, at)
        wire = key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
            yield key >> 3, value
        elif wire == 2:
            size, at = _read_varint(data, at)
            if at + size > end:
                raise ValueError('truncated field')
            yield key >> 3, data[at:at + size]
            at += size
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f'wire type {wire} not expected')
    if at != end:
        raise ValueError('truncated field')


def _partial(rejected: Any, message: Any) -> Optional[PartialSuccess]:
    try:
        count = int(rejected)
    except (TypeError, ValueError):
        return None
    if count <= 0:  # 0 with a message is a warning, not a rejection (OTLP/HTTP spec)
        return None
    text = message if isinstance(message, str) else ''
    return PartialSuccess(count, text[:DEFAULT_MAX_VALUE_LENGTH])


def read_protobuf_response(body: bytes) -> Optional[PartialSuccess]:
    """The partial success in a protobuf ``ExportTraceServiceResponse``, if any."""
    try:
        for number, value in _read_fields(body):
            if number == 1 and isinstance(value, bytes):  # partial_success
                rejected, message = 0, ''
                for inner, item in _read_fields(value):
                    if inner == 1 and isinstance(item, int):  # rejected_spans (int64)
                        rejected = item - (1 << 64) if item >= 1 << 63 else item
                    elif inner == 2 and isinstance(item, bytes):  # error_message
                        message = item.decode('utf-8', 'replace')
                return _partial(rejected, message)
    except (ValueError, IndexError):
        return None
    return None


def read_json_response(body: bytes) -> Optional[PartialSuccess]:
    """The partial success in a JSON ``ExportTraceServiceResponse``, if any."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    # lowerCamelCase is OTLP/JSON; proto3 JSON parsers also accept the original names.
    partial = document.get('partialSuccess', document.get('partial_success'))
    if not isinstance(partial, dict):
        return None
    return _partial(partial.get('rejectedSpans', partial.get('rejected_spans', 0)),
                    partial.get('errorMessage', partial.get('error_message', '')))


# --------------------------------------------------------------------------- protobuf

_BYTE = [bytes((i,)) for i in range(256)]
_pack_times = struct.Struct('<BQBQ').pack  # start_time_unix_nano (7), end_time_unix_nano (8)
_pack_event_time = struct.Struct('<BQ').pack
_pack_double = struct.Struct('<d').pack
_pack_fixed32 = struct.Struct('<I').pack

_FLAGS_FIELD = b'\x85\x01' + _pack_fixed32(_SAMPLED_FLAGS)  # field 16, fixed32
# PERF: the kind field (6) and the constant flags field (16) are written as one piece.
_KIND_FIELDS = {kind: b'\x30' + _BYTE[number] + _FLAGS_FIELD
                for kind, number in _KINDS.items()}
_INTERNAL_FIELD = b'\x30' + _BYTE[_INTERNAL] + _FLAGS_FIELD
_STATUS_FIELDS = {_STATUS_OK: b'\x7a\x02\x18\x01', _STATUS_ERROR: b'\x7a\x02\x18\x02'}
_TRUE = b'\x10\x01'
_FALSE = b'\x10\x00'


def _varint(value: int) -> bytes:
    """A non-negative int as a protobuf varint."""
    # PERF: explicit cases for what spans hold (lengths, status codes, ports, sizes).
    if value < 0x80:
        return _BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    if size < 0x80:
        return tag + _BYTE[size] + payload
    return tag + _varint(size) + payload


def _pb_any(value: Value) -> bytes:
    """An ``AnyValue`` message for a mapped value."""
    if type(value) is str:
        return _field(b'\x0a', _utf8(value))
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if type(value) is int:
        return b'\x18' + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    return b'\x21' + _pack_double(value)


def _pb_key_value(tag: bytes, key: str, value: Value, limit: int) -> bytes:
    if type(value) is str and len(value) > limit:
        value = value[:limit]
    return _field(tag, _field(b'\x0a', _utf8(_cut(key, limit)))
                  + _field(b'\x12', _pb_any(value)))


def _attribute(key_field: bytes, any_value: bytes) -> bytes:
    """A span's ``attributes`` field from a cached key part (see ``_key_field``)."""
    size = len(any_value)
    if size < 0x80:
        return _field(b'\x4a', key_field + _BYTE[size] + any_value)
    return _field(b'\x4a', key_field + _varint(size) + any_value)


def _pb_attributes(tag: bytes, pairs: Iterable[tuple[str, Any]], limit: int) -> bytes:
    return b''.join(_pb_key_value(tag, key, _value(value), limit) for key, value in pairs)


def _utf8(text: str) -> bytes:
    # 'replace': a lone surrogate becomes '?', so the bytes are always valid UTF-8, which
    # protobuf parsers check in string fields (one bad tag must not cost a whole batch).
    return text.encode('utf-8', 'replace')


class ProtobufEncoder:
    """Encodes finished spans as OTLP protobuf (``application/x-protobuf``).

    Args:
        resource: the resource attributes (``service.name``, ``telemetry.sdk.*``,
            ``host.name``, ``OTEL_RESOURCE_ATTRIBUTES``, ...), in order.
        scope_version: the version of the instrumentation scope (this package's).
        process_id: a callable returning the current process id, written as
            ``process.pid`` and asked once per batch, so that a forked child writes its
            own (the format stays pure: the caller gives ``os.getpid``).
        max_value_length: the longest string written (characters); longer ones are cut.

    The encoder is safe to share between threads: it only changes small caches, where
    a lost insert costs nothing but a later miss.
    """

    name = 'otlp'  # in log lines
    content_type = PROTOBUF_CONTENT_TYPE
    read_response = staticmethod(read_protobuf_response)

    def __init__(self, resource: Mapping[str, Any], scope_version: str, *,
                 process_id: Optional[Callable[[], int]] = None,
                 max_value_length: int = DEFAULT_MAX_VALUE_LENGTH) -> None:
        _check_limit(max_value_length)
        self.resource = dict(resource)
        self.scope_version = scope_version
        self.max_value_length = max_value_length
        self._process_id = process_id
        self._pid: Optional[int] = None
        self._resource_bytes = b''
        self._scope_field = _field(b'\x0a', _field(b'\x0a', _utf8(SCOPE_NAME))
                                   + _field(b'\x12', _utf8(scope_version)))
        # key -> the 'key' field of a KeyValue (b'\x0a' len key); None: mapped tags.
        self._key_cache: dict[str, Optional[bytes]] = dict.fromkeys(_SPECIAL_TAGS)
        # key -> {value: the whole attributes field}; see _PAIR_CACHE_KEYS.
        self._pair_cache: dict[str, dict[Any, bytes]] = {}
        self._name_cache: dict[str, bytes] = {}
        # The wrapper's ServerSpan (see _encode_server): the key fields of its
        # per-request attributes, cut as _key_field cuts them.
        (self._url_key, self._ipv4_key, self._ipv6_key, self._port_key,
         self._size_key) = (_field(b'\x0a', _utf8(_cut(key, max_value_length))) + b'\x12'
                            for key in ('http.url', 'peer.ipv4', 'peer.ipv6', 'peer.port',
                                        TAG_RESPONSE_SIZE))
        self._aborted_field = _pb_key_value(b'\x4a', TAG_ABORTED, True, max_value_length)
        # (name, method, component, status, route) -> _ServerShape; address -> field
        self._server_shapes: dict[Any, _ServerShape] = {}
        self._peer_fields: dict[str, bytes] = {}
        self._port_fields: dict[int, bytes] = {}
        self._size_fields: dict[int, bytes] = {}
        # StableServerSpan (see _encode_stable): the keys of its per-request attributes
        # written per span, and per key a bounded cache of the fields of its values.
        self._path_key, self._query_key = (
            _field(b'\x0a', _utf8(_cut(key, max_value_length))) + b'\x12'
            for key in (semconv.URL_PATH, semconv.URL_QUERY))
        self._peer_port_key = (_field(b'\x0a', _utf8(_cut(semconv.NETWORK_PEER_PORT,
                                                       max_value_length))) + b'\x12')
        self._server_groups: dict[tuple[Any, ...], bytes] = {}
        self._client_groups: dict[tuple[Any, ...], bytes] = {}
        self._stable_ports: dict[int, bytes] = {}
        # Per text key (URL, path, query): a value's field head (everything before its
        # UTF-8 bytes) by the value's size, made once per size (see _text_field).
        self._url_heads, self._path_heads, self._query_heads = (
            _text_heads(key) for key in (self._url_key, self._path_key, self._query_key))
        self._build_resource(None if process_id is None else process_id())

    def _build_resource(self, pid: Optional[int]) -> None:
        attributes = dict(self.resource)
        if pid is not None:
            attributes['process.pid'] = pid
        self._pid = pid
        self._resource_bytes = _field(b'\x0a', _pb_attributes(
            b'\x0a', attributes.items(), self.max_value_length))

    def frame(self, pieces: list[bytes]) -> bytes:
        """One ``ExportTraceServiceRequest`` holding the pieces (a batch's spans)."""
        return cast(bytes, self.frame_into(pieces, None))  # no buffer: bytes

    def frame_into(self, pieces: list[bytes], buffer: Optional[BodyBuffer]) -> Body:
        """:meth:`frame`, a large body written into ``buffer`` (see ``_framing``)."""
        if self._process_id is not None:
            pid = self._process_id()
            if pid != self._pid:
                self._build_resource(pid)
        # PERF: the enclosing fields' headers are made from the pieces' total length,
        # so the body is joined once (see _framing).
        scope_payload = len(self._scope_field) + sum(map(len, pieces))
        scope_header = b'\x12' + _varint(scope_payload)
        resource_payload = len(self._resource_bytes) + len(scope_header) + scope_payload
        prefix = (b'\x0a' + _varint(resource_payload) + self._resource_bytes + scope_header
                  + self._scope_field)
        return join_bytes(prefix, pieces, buffer,
                          len(prefix) + scope_payload - len(self._scope_field))

    def encode(self, span: Any) -> Optional[bytes]:
        """Encode one finished span as the ``spans`` field of a ``ScopeSpans`` message.

        Args:
            span: a finished span (the Span contract: ``context``, ``operation_name``,
                ``start_time``, ``duration``, ``tags``, ``logs``; ``references`` when
                present).

        Returns:
            The field's bytes (tag, length, ``Span``), or ``None`` when the span's ids are
            not hex of their wire width (the span is then dropped, not sent; the
            wrapper's server span is trusted, see :meth:`_encode_server`).
        """
        kind = type(span)
        if (kind is ServerSpan or kind is StableServerSpan) and not span.merged \
                and not span._tags and not span.logs and not span.references:
            # PERF: the wrapper's server span with nothing set through the API: what a
            # route's requests share is bytes made once per shape (see _server_shape).
            stable = kind is StableServerSpan
            try:
                key: Any = ((span.operation_name, span.method, span.component,
                             span.status_code, span.route, span.scheme, span.error_type,
                             span.method_original) if stable
                            else (span.operation_name, span.method, span.component,
                                  span.status_code, span.route))
                shape = self._server_shapes.get(key)
            except TypeError:  # an unhashable value set by hand: no cache
                key = shape = None
            if shape is None or shape[0] is not span.route_tags:
                shape = self._server_shape(span, key, stable)
            name_field = shape[1]
            if name_field is not None:
                encoded = (self._encode_stable if stable else self._encode_server)(
                    span, shape, name_field)
                if encoded is not None:
                    return encoded
        context = span.context
        trace_id = context.trace_id
        span_id = context.span_id
        parent_id = context.parent_id
        # PERF: the ids and their field tags become bytes in one C call, which checks them
        # as well: only hex of the exact widths gives exactly the expected length
        # (fromhex skips whitespace, so a shorter result is a bad id too).
        if type(trace_id) is not str or type(span_id) is not str:
            return None
        if len(trace_id) == 16:
            trace_id = '0000000000000000' + trace_id
        try:
            if parent_id is None:
                head = bytes.fromhex(f'0a10{trace_id}1208{span_id}')
                if len(head) != 28:
                    return None
            else:
                if type(parent_id) is not str:
                    return None
                head = bytes.fromhex(f'0a10{trace_id}1208{span_id}2208{parent_id}')
                if len(head) != 38:
                    return None
        except ValueError:
            return None

        limit = self.max_value_length
        name = span.operation_name
        name_field = self._name_cache.get(name) if type(name) is str else None
        if name_field is None:
            name_field = self._name_field(name)
        # PERF: ``x.__round__()`` is round(x) without the builtin's lookup (~500
        # instructions less each); the same in every encoder here.
        start = (span.start_time * 1e6).__round__() * 1000  # see 'Times' in the module docstring
        duration = (span.duration * 1e9).__round__()
        times = _pack_times(0x39, start, 0x41, start + (duration if duration > 0 else 0))
        # PERF: protobuf fields may come in any order, so the parts are appended as they
        # are known (the kind, from the tags, last) into one list joined once.
        parts = [head, name_field, times]
        add = parts.append
        tracestate = context.tracestate
        if tracestate:
            add(_field(b'\x1a', _utf8(tracestate)))

        kind_field = _INTERNAL_FIELD
        kind_number = _INTERNAL
        error = _ABSENT
        tags = span.tags
        if tags:
            keys = self._key_cache
            values = self._pair_cache
            keep = add
            for key, value in tags.items():
                # PERF: most values repeat; their finished field is one lookup away.
                seen = values.get(key)
                if seen is not None and (type(value) is str or type(value) is int):
                    field = seen.get(value)
                    if field is not None:
                        keep(field)
                        continue
                key_field = keys.get(key)
                if key_field is None:
                    if key == 'span.kind':
                        known = _KIND_FIELDS.get(value) if type(value) is str else None
                        if known is None and type(value) is str:
                            known = _KIND_FIELDS.get(value.lower())
                        if known is not None:
                            kind_field = known
                            kind_number = known[1]
                            continue
                    elif key == 'error':
                        error = value
                        continue
                    key_field = self._key_field(key)
                # key_field is the KeyValue's key field and the value's tag (b'\x12'), so
                # the attribute is: 0x4a, len, key_field, len, AnyValue.
                # PERF: str first (nearly every tag), formatted in one C call when all
                # lengths fit in one byte; bool before int (bool is an int).
                if type(value) is str:
                    if len(value) > limit:
                        value = value[:limit]
                    try:  # PERF: strict UTF-8 is the fast codec path
                        data = value.encode()
                    except UnicodeEncodeError:  # a lone surrogate: see _utf8
                        data = value.encode('utf-8', 'replace')
                    size = len(data)
                    total = len(key_field) + size + 3
                    if total < 0x80:
                        field = b'J%c%b%c\n%c%b' % (total, key_field, size + 2, size, data)
                    else:
                        field = _attribute(key_field, b'\n' + _varint(size) + data)
                elif value is True:
                    field = _attribute(key_field, _TRUE)
                elif value is False:
                    field = _attribute(key_field, _FALSE)
                elif type(value) is int and 0 <= value < 0x200000 and len(key_field) < 0x70:
                    # PERF: status codes, ports, sizes: a varint of one to three bytes
                    # written by one C call (about half the cost of building it apart).
                    if value < 0x80:
                        field = b'J%c%b\x02\x18%c' % (len(key_field) + 3, key_field, value)
                    elif value < 0x4000:
                        field = b'J%c%b\x03\x18%c%c' % (len(key_field) + 4, key_field,
                                                        (value & 0x7F) | 0x80, value >> 7)
                    else:
                        field = b'J%c%b\x04\x18%c%c%c' % (
                            len(key_field) + 5, key_field, (value & 0x7F) | 0x80,
                            ((value >> 7) & 0x7F) | 0x80, value >> 14)
                elif type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
                    field = _attribute(key_field,
                                       b'\x18' + _varint(value & 0xFFFFFFFFFFFFFFFF))
                else:
                    mapped = _value(value)
                    if type(mapped) is str and len(mapped) > limit:
                        mapped = mapped[:limit]
                    field = _attribute(key_field, _pb_any(mapped))
                keep(field)
                if seen is not None and len(seen) < _PAIR_CACHE_VALUES and (
                        type(value) is int or (type(value) is str
                                               and len(value) <= _PAIR_CACHE_LENGTH)):
                    seen[value] = field
        add(kind_field)

        status = 0
        if error is not _ABSENT:
            status = _status(error, kind_number, tags)
            if status == 0:  # not a boolean: an attribute like any other
                add(_pb_key_value(b'\x4a', 'error', _value(error), limit))
        logs = span.logs
        described = None
        if logs:
            events, described = _events(logs)
            for nanos, event_name, pairs in events:
                add(_field(b'\x5a', _pack_event_time(0x09, nanos)
                           + _field(b'\x12', _utf8(_cut(event_name, limit)))
                           + _pb_attributes(b'\x1a', pairs, limit)))
        references = getattr(span, 'references', None)
        if references:
            for link_trace, link_span, link_state, ref_type in _links(references):
                try:
                    ids = bytes.fromhex(f'0a10{link_trace}1208{link_span}')
                except ValueError:
                    continue
                if len(ids) != 28:
                    continue
                add(_field(b'\x6a', ids
                           + (_field(b'\x1a', _utf8(link_state)) if link_state else b'')
                           + _pb_key_value(b'\x22', 'opentracing.ref_type', ref_type, limit)
                           + b'\x35' + _pack_fixed32(_SAMPLED_FLAGS)))
        if status > 0:
            if status == _STATUS_ERROR and described:
                add(_field(b'\x7a', _field(b'\x12', _utf8(_cut(described, limit)))
                           + b'\x18\x02'))
            else:
                add(_STATUS_FIELDS[status])
        # What the tracer's span limits dropped (dropped_attributes_count = 10,
        # dropped_events_count = 12); absent (zero) on nearly every span.
        # PERF: _dropped_fields inlined: one call fewer on every span of this path.
        dropped_attributes, dropped_events = _dropped_counts(span)
        if dropped_attributes:
            add(b'\x50' + _varint(dropped_attributes))
        if dropped_events:
            add(b'\x60' + _varint(dropped_events))
        body = b''.join(parts)
        size = len(body)
        # The ScopeSpans 'spans' field (2): tag, length, Span.
        return b'\x12' + (_BYTE[size] if size < 0x80 else _varint(size)) + body

    def _encode_server(self, span: Any, shape: _ServerShape, name_field: bytes
                       ) -> Optional[bytes]:
        """The bytes :meth:`encode` makes of a ServerSpan without tags set through the
        API, logs or references, the same bytes in the same order, made with the shape's
        shared parts (``None``: a value the generic path must map, such as a port out
        of range)."""
        address = span.peer_address
        if address:
            # PERF: a peer's field is made once per address (bounded).
            peer = self._peer_fields.get(address)
            if peer is None:
                peer = self._peer_field(address)
        else:
            peer = b''
        port_field = self._port(self._port_fields, self._port_key, span.peer_port)
        if port_field is None:
            return None
        return self._field_span(span, shape, name_field, b''.join((
            self._text_field(self._url_key, self._url_heads, span.url,
                             self.max_value_length), peer,
            port_field)))

    def _encode_stable(self, span: Any, shape: _ServerShape, name_field: bytes
                       ) -> Optional[bytes]:
        """:meth:`_encode_server` for a StableServerSpan."""
        limit = self.max_value_length
        query = span.query
        # PERF: what repeats between one client's requests (the host, the peer, the
        # client, the protocol, the user agent) is bytes made once per combination, in
        # two groups around the peer's port, which changes per connection (bounded
        # caches: the client sends most of these).
        server = (span.server_address, span.server_port, span.peer_address)
        front = self._server_groups.get(server)
        if front is None:
            front = self._value_fields(self._server_groups, server, _SERVER_GROUP)
            if front is None:
                return None
        client = (span.client_address, span.protocol_version, span.user_agent)
        back = self._client_groups.get(client)
        if back is None:
            back = self._value_fields(self._client_groups, client, _CLIENT_GROUP)
            if back is None:
                return None
        port_field = self._port(self._stable_ports, self._peer_port_key, span.peer_port)
        if port_field is None:
            return None
        return self._field_span(span, shape, name_field, b''.join((
            self._text_field(self._path_key, self._path_heads, span.path, limit),
            b'' if query is None else self._text_field(self._query_key, self._query_heads,
                                                       query, limit),
            front, port_field, back)))

    def _port(self, cache: dict[int, bytes], key_field: bytes, port: Any
              ) -> Optional[bytes]:
        """A port's attribute (``b''`` for none; ``None``: the general path must map it).

        PERF: looked up, as the general path's pair cache does; a new client port per
        connection misses and is made in one C call (see _int_field)."""
        if port is None:
            return b''
        field = cache.get(port)
        return self._int_field(cache, key_field, port) if field is None else field

    def _field_span(self, span: Any, shape: _ServerShape, name_field: bytes,
                    request: bytes) -> Optional[bytes]:
        """The ``spans`` field of a span of the wrapper's written from its fields: the
        ids, the name, the times, the shape's parts around the ``request`` attributes
        and the outcome's, in the general path's order.

        The ids are not checked: the wrapper makes its server spans only from the
        tracer's id generator and ``extract()``, whose ids the tracer guarantees (see
        ``tracer/context.py``); ``bytes.fromhex`` still turns them into bytes.
        """
        context = span._context
        trace_id = context.trace_id
        if len(trace_id) == 16:
            trace_id = '0000000000000000' + trace_id
        parent_id = context.parent_id
        start = (span.start_time * 1e6).__round__() * 1000
        duration = (span.duration * 1e9).__round__()
        sent = span.response_size
        if sent:
            size_field = self._size_fields.get(sent)
            if size_field is None:
                size_field = self._int_field(self._size_fields, self._size_key, sent)
                if size_field is None:
                    return None
        else:
            size_field = b''
        tracestate = context.tracestate
        # PERF: one join of every part; absent ones are empty.
        body = b''.join((
            bytes.fromhex(f'0a10{trace_id}1208{context.span_id}' if parent_id is None
                          else f'0a10{trace_id}1208{context.span_id}2208{parent_id}'),
            name_field,
            _pack_times(0x39, start, 0x41, start + (duration if duration > 0 else 0)),
            _field(b'\x1a', _utf8(tracestate)) if tracestate else b'',
            shape[2], request, shape[3], size_field,
            self._aborted_field if span.aborted else b'',
            shape[4],
            _dropped_fields(span) if span.dropped_attributes_count
            or span.dropped_events_count else b''))
        size = len(body)
        return b'\x12' + (_BYTE[size] if size < 0x80 else _varint(size)) + body

    @staticmethod
    def _text_field(key_field: bytes, heads: list[bytes], value: Any, limit: int) -> bytes:
        """A str attribute's field, as the general path writes it; ``heads`` are
        ``key_field``'s field heads by value size (:func:`_text_heads`)."""
        if type(value) is not str:
            value = _value(value)
            if type(value) is not str:
                return _attribute(key_field, _pb_any(value))
        if len(value) > limit:
            value = value[:limit]
        try:
            data = value.encode()
        except UnicodeEncodeError:  # a lone surrogate: see _utf8
            data = value.encode('utf-8', 'replace')
        size = len(data)
        # PERF: a short value's head (lengths and key) is ready: one concatenation.
        return (heads[size] + data if size < len(heads)
                else _attribute(key_field, b'\n' + _varint(size) + data))

    def _value_fields(self, cache: dict[Any, bytes], values: tuple[Any, ...],
                      keys: tuple[str, ...]) -> Optional[bytes]:
        """The attributes of a group of str or int fields (``None``: no attribute),
        cached (bounded); None for a value the general path must map (an int that is
        negative or past int64, another type)."""
        fields = []
        for key, value in zip(keys, values):
            if value is None:
                continue
            if type(value) is int:
                if not 0 <= value <= _INT64_MAX:
                    return None
            elif type(value) is not str:
                return None
            fields.append(_pb_key_value(b'\x4a', key, value, self.max_value_length))
        joined = b''.join(fields)
        if len(cache) >= _INT_FIELDS_SIZE:
            cache.clear()
        cache[values] = joined
        return joined

    @staticmethod
    def _int_field(cache: dict[int, bytes], key_field: bytes, value: Any
                   ) -> Optional[bytes]:
        """An int attribute's field, cached (bounded); None: not a non-negative int64."""
        if type(value) is not int or not 0 <= value <= _INT64_MAX:
            return None
        # PERF: ports (and most sizes) in one C call, as the general path writes them:
        # a new client port per connection misses the cache.
        if value < 0x4000 or value >= 0x200000 or len(key_field) >= 0x70:
            field = _attribute(key_field, b'\x18' + _varint(value))
        else:
            field = b'J%c%b\x04\x18%c%c%c' % (len(key_field) + 5, key_field,
                                               (value & 0x7F) | 0x80,
                                               ((value >> 7) & 0x7F) | 0x80, value >> 14)
        if len(cache) >= _INT_FIELDS_SIZE:
            cache.clear()
        cache[value] = field
        return field

    def _peer_field(self, address: str) -> bytes:
        """The ``peer.ipv4``/``peer.ipv6`` attribute of a peer address (cached)."""
        field = _pb_key_value(b'\x4a', 'peer.ipv6' if ':' in address else 'peer.ipv4',
                              address, self.max_value_length)
        if len(self._peer_fields) >= _PEER_FIELDS_SIZE:
            self._peer_fields.clear()
        self._peer_fields[address] = field
        return field

    def _server_shape(self, span: Any, key: Any, stable: bool = False) -> _ServerShape:
        """The bytes a ServerSpan (or, ``stable``, a StableServerSpan) shares with the
        other requests of its shape.

        Returns ``(route_tags, name field, the attributes before the request's own
        (component, the method; with the stable names also the original method and
        url.scheme), the status code, and the rest (http.route, the route's tags,
        error.type, the kind and flags, an ERROR status for a 5xx))``, in the order
        :meth:`encode` writes them for the same span; the name field is ``None`` when a
        route tag has the name of a field (then the generic path maps the merged tags).
        Cached by ``key`` (bounded; the route tags compared by identity, as in the
        Zipkin encoder), except for a method outside the known list, whose original text
        is the client's.
        """
        limit = self.max_value_length
        route_tags = span.route_tags
        name = span.operation_name
        name_field = self._name_cache.get(name) if type(name) is str else None
        if name_field is None:
            name_field = self._name_field(name)
        code = span.status_code
        route = span.route
        usable = type(code) is int and (not route_tags or (
            all(type(tag) is str for tag in route_tags)
            and route_tags.keys().isdisjoint(STABLE_FIELD_TAGS if stable
                                             else SERVER_FIELD_TAGS)))
        original = span.method_original if stable else None
        error_type = span.error_type if stable else None
        method = _pb_key_value(b'\x4a', semconv.REQUEST_METHOD if stable else 'http.method',
                               _value(span.method), limit)
        if stable:
            method += ((_pb_key_value(b'\x4a', semconv.METHOD_ORIGINAL, _value(original), limit)
                        if original is not None else b'')
                       + _pb_key_value(b'\x4a', semconv.URL_SCHEME, _value(span.scheme),
                                       limit))
        shape: _ServerShape = (
            route_tags, name_field if usable else None,
            _pb_key_value(b'\x4a', 'component', _value(span.component), limit) + method,
            _pb_key_value(b'\x4a', semconv.RESPONSE_STATUS_CODE if stable
                          else 'http.status_code', _value(code), limit) if code else b'',
            (_pb_key_value(b'\x4a', TAG_ROUTE, _value(route), limit) if route else b'')
            + (b''.join(_pb_key_value(b'\x4a', tag, _value(value), limit)
                        for tag, value in route_tags.items()) if route_tags and usable
               else b'')
            + (_pb_key_value(b'\x4a', semconv.ERROR_TYPE, _value(error_type), limit)
               if error_type is not None else b'')
            + _KIND_FIELDS['server']
            + (_STATUS_FIELDS[_STATUS_ERROR] if usable and code >= 500 else b''))
        if key is not None and original is None:
            if len(self._server_shapes) >= _SERVER_SHAPES_SIZE:
                self._server_shapes.clear()
            self._server_shapes[key] = shape
        return shape

    def _name_field(self, name: Any) -> bytes:
        text = name if type(name) is str else _text(name)
        field = _field(b'\x2a', _utf8(_cut(text, self.max_value_length)))
        if type(name) is str and len(self._name_cache) < _NAME_CACHE_SIZE:
            self._name_cache[name] = field
        return field

    def _key_field(self, key: Any) -> bytes:
        """The ``key`` field of a KeyValue for a tag key and the ``value`` field's tag,
        cached while there is room."""
        text = key if type(key) is str else _text(key)
        field = _field(b'\x0a', _utf8(_cut(text, self.max_value_length))) + b'\x12'
        cache = self._key_cache
        if type(key) is str and len(cache) < _KEY_CACHE_SIZE and key not in _SPECIAL_TAGS:
            cache[key] = field
            if len(self._pair_cache) < _PAIR_CACHE_KEYS:
                self._pair_cache[key] = {}
        return field


def _text_heads(key_field: bytes) -> list[bytes]:
    """The head of a str attribute's field (``KeyValue`` tag and length, ``key_field``,
    the ``AnyValue`` tag and length, the string's tag and length) for each value size
    whose whole field still has a one-byte length: the field is ``heads[size] + data``.
    """
    heads = []
    for size in range(0x80 - len(key_field) - 3):
        heads.append(b'J%c%b%c\n%c' % (len(key_field) + size + 3, key_field, size + 2,
                                         size))
    return heads


def _dropped_fields(span: Any) -> bytes:
    """The protobuf fields of the span's dropped counts (see ProtobufEncoder.encode)."""
    attributes, events = _dropped_counts(span)
    return ((b'\x50' + _varint(attributes) if attributes else b'')
            + (b'\x60' + _varint(events) if events else b''))


def _dropped_counts(span: Any) -> tuple[int, int]:
    """The tags and log records the span's limits dropped (0, 0 for a span without
    counts, such as another tracer's)."""
    attributes = getattr(span, 'dropped_attributes_count', 0)
    events = getattr(span, 'dropped_events_count', 0)
    return (attributes if type(attributes) is int and attributes > 0 else 0,
            events if type(events) is int and events > 0 else 0)


# --------------------------------------------------------------------------- JSON
def _escape(text: str) -> str:
    """A JSON string literal, ASCII only, of valid Unicode.

    A lone surrogate becomes '?', as in the protobuf encoding: a ``\\ud800`` escape is
    valid JSON but not valid Unicode, and OTLP receivers (protobuf's JSON parser) reject
    the whole request for it. ``str.isascii`` is a flag test, so ASCII text costs nothing.
    """
    if not text.isascii():
        text = text.encode('utf-8', 'replace').decode()
    return _c_escape(text)



def _json_any(value: Value) -> str:
    """An ``AnyValue`` object in OTLP JSON."""
    if type(value) is str:
        return '{"stringValue":' + _escape(value) + '}'
    if value is True:
        return '{"boolValue":true}'
    if value is False:
        return '{"boolValue":false}'
    if type(value) is int:
        return f'{{"intValue":"{value}"}}'  # int64: a decimal string in proto3 JSON
    number = float(value)
    if number != number:
        return '{"doubleValue":"NaN"}'
    if number in (float('inf'), float('-inf')):
        return '{"doubleValue":"' + ('Infinity' if number > 0 else '-Infinity') + '"}'
    return '{"doubleValue":' + repr(number) + '}'


def _json_key_value(key: str, value: Value, limit: int) -> str:
    if type(value) is str and len(value) > limit:
        value = value[:limit]
    return '{"key":' + _escape(_cut(key, limit)) + ',"value":' + _json_any(value) + '}'


def _json_attributes(pairs: Iterable[tuple[str, Any]], limit: int) -> str:
    return ','.join(_json_key_value(key, _value(value), limit) for key, value in pairs)


class JsonEncoder:
    """Encodes finished spans as OTLP JSON (``application/json``).

    Args:
        resource, scope_version, process_id, max_value_length: as for
            :class:`ProtobufEncoder`.

    The output is pure ASCII (non-ASCII and lone surrogates become ``\\uXXXX`` escapes).
    """

    name = 'otlp'  # in log lines
    content_type = JSON_CONTENT_TYPE
    read_response = staticmethod(read_json_response)

    def __init__(self, resource: Mapping[str, Any], scope_version: str, *,
                 process_id: Optional[Callable[[], int]] = None,
                 max_value_length: int = DEFAULT_MAX_VALUE_LENGTH) -> None:
        _check_limit(max_value_length)
        self.resource = dict(resource)
        self.scope_version = scope_version
        self.max_value_length = max_value_length
        self._process_id = process_id
        self._pid: Optional[int] = None
        self._prefix = ''
        self._key_cache: dict[str, Optional[str]] = dict.fromkeys(_SPECIAL_TAGS)
        self._pair_cache: dict[str, dict[Any, str]] = {}
        self._build_prefix(None if process_id is None else process_id())

    def _build_prefix(self, pid: Optional[int]) -> None:
        attributes = dict(self.resource)
        if pid is not None:
            attributes['process.pid'] = pid
        self._pid = pid
        scope = ('{"name":' + _escape(SCOPE_NAME) + ',"version":'
                 + _escape(self.scope_version) + '}')
        self._prefix = ('{"resourceSpans":[{"resource":{"attributes":['
                        + _json_attributes(attributes.items(), self.max_value_length)
                        + ']},"scopeSpans":[{"scope":' + scope + ',"spans":[')

    def frame(self, pieces: list[str]) -> bytes:
        """One ``ExportTraceServiceRequest`` JSON document holding the pieces."""
        return cast(bytes, self.frame_into(pieces, None))  # no buffer: bytes

    def frame_into(self, pieces: list[str], buffer: Optional[BodyBuffer]) -> Body:
        """:meth:`frame`, a large body written into ``buffer`` (see ``_framing``)."""
        if self._process_id is not None:
            pid = self._process_id()
            if pid != self._pid:
                self._build_prefix(pid)
        return join_text(pieces, self._prefix, ',', ']}]}]}', buffer)

    def encode(self, span: Any) -> Optional[str]:
        """Encode one finished span as the text of one OTLP JSON ``Span`` object.

        Returns:
            The JSON text (ASCII), or ``None`` when the span's ids are not lower-case hex
            of their wire width (the span is then dropped, not sent).
        """
        context = span.context
        trace_id = context.trace_id
        span_id = context.span_id
        parent_id = context.parent_id
        # PERF: as in the Zipkin encoder: the widths, then one C-level pass over the
        # joined ids (deleting the hex digits must leave nothing); the ids are then
        # written unescaped.
        if type(trace_id) is not str or type(span_id) is not str or len(span_id) != 16:
            return None
        if parent_id is None:
            ids = trace_id + span_id
            if len(ids) != 32 and len(ids) != 48:
                return None
        else:
            if type(parent_id) is not str or len(parent_id) != 16:
                return None
            ids = trace_id + span_id + parent_id
            if len(ids) != 48 and len(ids) != 64:
                return None
        if not ids.isascii() or ids.encode().translate(None, b'0123456789abcdef'):
            return None
        if len(trace_id) == 16:
            trace_id = '0000000000000000' + trace_id

        limit = self.max_value_length
        name = span.operation_name
        if type(name) is not str:
            name = _text(name)
        if len(name) > limit:
            name = name[:limit]
        start = (span.start_time * 1e6).__round__() * 1000  # see 'Times' in the module docstring
        duration = (span.duration * 1e9).__round__()
        end = start + (duration if duration > 0 else 0)
        tracestate = context.tracestate
        parent = '' if parent_id is None else f'"parentSpanId":"{parent_id}",'
        state = '' if not tracestate else f'"traceState":{_escape(tracestate)},'

        kind = _INTERNAL
        error = _ABSENT
        attributes_json = ''
        tags = span.tags
        if tags:
            keys = self._key_cache
            values = self._pair_cache
            pairs: list[str] = []
            keep = pairs.append
            for key, value in tags.items():
                seen = values.get(key)
                if seen is not None and (type(value) is str or type(value) is int):
                    pair = seen.get(value)
                    if pair is not None:
                        keep(pair)
                        continue
                fragment = keys.get(key)
                if fragment is None:
                    if key == 'span.kind':
                        known = _KINDS.get(value) if type(value) is str else None
                        if known is None and type(value) is str:
                            known = _KINDS.get(value.lower())
                        if known is not None:
                            kind = known
                            continue
                    elif key == 'error':
                        error = value
                        continue
                    fragment = self._key_fragment(key)
                if type(value) is str:
                    # PERF: one f-string (a single BUILD_STRING), not a chain of '+'.
                    if len(value) > limit:
                        value = value[:limit]
                    pair = (f'{fragment}{{"stringValue":'
                            f'{_c_escape(value) if value.isascii() else _escape(value)}}}}}')
                elif value is True:
                    pair = fragment + '{"boolValue":true}}'
                elif value is False:
                    pair = fragment + '{"boolValue":false}}'
                elif type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
                    pair = f'{fragment}{{"intValue":"{value}"}}}}'
                else:
                    mapped = _value(value)
                    if type(mapped) is str and len(mapped) > limit:
                        mapped = mapped[:limit]
                    pair = fragment + _json_any(mapped) + '}'
                keep(pair)
                if seen is not None and len(seen) < _PAIR_CACHE_VALUES and (
                        type(value) is int or (type(value) is str
                                               and len(value) <= _PAIR_CACHE_LENGTH)):
                    seen[value] = pair
            status = 0
            if error is not _ABSENT:
                status = _status(error, kind, tags)
                if status == 0:
                    keep(_json_key_value('error', _value(error), limit))
            if pairs:
                attributes_json = ',"attributes":[' + ','.join(pairs) + ']'
        else:
            status = 0

        events_json = links_json = status_json = ''
        logs = span.logs
        described = None
        if logs:
            events, described = _events(logs)
            if events:
                events_json = ',"events":[' + ','.join(
                    f'{{"timeUnixNano":"{nanos}",'
                    f'"name":{_escape(_cut(event_name, limit))},'
                    f'"attributes":[{_json_attributes(event_pairs, limit)}]}}'
                    for nanos, event_name, event_pairs in events) + ']'
        references = getattr(span, 'references', None)
        if references:
            items = []
            for link_trace, link_span, link_state, ref_type in _links(references):
                link_ids = link_trace + link_span
                if len(link_ids) != 48 or not link_ids.isascii() \
                        or link_ids.encode().translate(None, b'0123456789abcdef'):
                    continue
                items.append(f'{{"traceId":"{link_trace}","spanId":"{link_span}",'
                             + (f'"traceState":{_escape(link_state)},' if link_state
                                else '')
                             + '"attributes":['
                             + _json_key_value('opentracing.ref_type', ref_type, limit)
                             + f'],"flags":{_SAMPLED_FLAGS}}}')
            if items:
                links_json = ',"links":[' + ','.join(items) + ']'
        if status > 0:
            message = ''
            if status == _STATUS_ERROR and described:
                message = ',"message":' + _escape(_cut(described, limit))
            status_json = f',"status":{{"code":{status}{message}}}'
        dropped_attributes, dropped_events = _dropped_counts(span)
        if dropped_attributes:
            status_json += f',"droppedAttributesCount":{dropped_attributes}'
        if dropped_events:
            status_json += f',"droppedEventsCount":{dropped_events}'
        # PERF: one f-string for the whole object; the ids are known-safe (checked above).
        return (f'{{"traceId":"{trace_id}","spanId":"{span_id}",{parent}{state}'
                f'"name":{_c_escape(name) if name.isascii() else _escape(name)},'
                f'"kind":{kind},'
                f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}"'
                f'{attributes_json}{events_json}{links_json}{status_json},'
                f'"flags":{_SAMPLED_FLAGS}}}')

    def _key_fragment(self, key: Any) -> str:
        """The ``{"key":"...","value":`` fragment of a tag key, cached while there is room."""
        text = key if type(key) is str else _text(key)
        fragment = '{"key":' + _escape(_cut(text, self.max_value_length)) + ',"value":'
        cache = self._key_cache
        if type(key) is str and len(cache) < _KEY_CACHE_SIZE and key not in _SPECIAL_TAGS:
            cache[key] = fragment
            if len(self._pair_cache) < _PAIR_CACHE_KEYS:
                self._pair_cache[key] = {}
        return fragment


def _check_limit(max_value_length: Any) -> None:
    if isinstance(max_value_length, bool) or not isinstance(max_value_length, int) \
            or max_value_length < 16:
        raise ValueError(f'max_value_length must be an int >= 16, got {max_value_length!r}')
