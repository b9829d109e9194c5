"""AWS X-Ray segment documents for finished spans: pure functions of the span, no I/O.

Each finished span becomes one **datagram text** for the X-Ray daemon: the daemon header
``{"format": "json", "version": 1}`` and a newline, then one segment document as compact
JSON (ASCII only, so its length in characters is its size in bytes). The fields follow
the AWS X-Ray segment document reference.

Decisions:

* **One document per span.** A ``server`` or ``consumer`` span, and any span without a
  parent, is a *segment*: it is named after the service (X-Ray builds its service map
  from segment names; the route goes into the ``operation`` annotation, where it can be
  searched), and its ``parent_id`` is the caller's span when there is one. Every other
  span is an *independent subsegment* (``"type": "subsegment"`` with ``trace_id`` and
  ``parent_id``), sent on its own rather than embedded in its segment, so a request with
  many outgoing calls never makes one large document and nothing waits for the segment
  to finish first. ``client`` and ``producer`` spans are subsegments in the ``remote``
  namespace named after what they called (``peer.service``, else the host of
  ``http.url``, ``peer.hostname``, the peer address, and last the operation name), so
  X-Ray draws the downstream service as an inferred node. Because every server span is
  a child of the caller's span (never a shared id), the callee's segment ``parent_id``
  is exactly the caller's subsegment ``id``, which is how X-Ray links them.
* **Ids.** ``id`` is the span id; ``trace_id`` is the trace id in X-Ray form
  (:func:`~falcon_tracing_wsgi.propagation.xray.to_xray_trace_id`). A span whose ids are
  not hex of their wire width (a broken Span contract) is not encoded (``None``).
* **HTTP.** ``http.request`` gets ``method`` and ``url`` (already redacted by the
  middleware), and for segments ``client_ip`` (``peer.ipv4``/``peer.ipv6``) and
  ``user_agent`` (when the ``User-Agent`` request header is captured);
  ``http.response`` gets the integer ``status`` and, for segments,
  ``content_length`` (``http.response_size``).
* **Error flags** from the status: 5xx sets ``fault``; 429 sets ``throttle`` and
  ``error``; any other 4xx sets ``error``. An ``error`` tag without a 4xx status (an
  exception, an aborted response) sets ``fault``.
* **Causes.** Every log that records an error (``event=error``, or an ``error.kind`` or
  ``error.object`` field) becomes one entry of ``cause.exceptions`` with a random
  16-hex ``id``, ``type`` (``error.kind``), ``message`` and ``stack`` frames parsed from
  the ``stack`` text (or taken from a traceback object), innermost frame first, at most
  :data:`MAX_FRAMES` of them (the rest counted in ``truncated``); ``remote`` is set on
  client spans, whose errors come from the service they called. ``working_directory``
  is added when the encoder knows it, and frame paths under it are made relative.
  URL secrets in the message and in the text of plain logs (``?token=...``,
  ``user:password@``) are redacted with the default names: exception texts often quote
  the URL they failed on.
* **Annotations** (indexed, searchable): ``operation`` (the span's operation name) and
  the process-wide tags (``FALCON_TRACING_TAGS``), with keys reduced to letters, digits
  and ``_`` as X-Ray requires. **Metadata** (not indexed) namespace ``opentracing``: the
  other tags and the logs that are not errors; what the tracer's span limits dropped
  as the tags ``otel.dropped_attributes_count`` and ``otel.dropped_events_count``.
* **Size.** A datagram, header included, is at most :data:`MAX_DATAGRAM_BYTES` (64,000)
  bytes: the daemon reads each datagram into a 64 KiB buffer and an IPv4 UDP payload
  cannot exceed 65,507 bytes. A larger document is cut in steps until it fits, and
  marked with the annotation ``truncated: true``: first the metadata goes, then the
  exception stacks, then the causes (the flags stay), and last long strings are cut to
  250 characters. Strings are cut to ``max_value_length`` characters in any case, names
  to 200, annotation values to 250.
* Values the JSON cannot carry (objects, NaN, infinities) are written as text. The
  segment's ``aws.xray`` object names this library (``sdk``, ``sdk_version``) as the
  X-Ray SDKs name themselves.
"""

from __future__ import annotations

import json
import math
import re
import traceback
import types
from collections.abc import Iterable
from random import getrandbits as _getrandbits
from typing import Any, Optional

from .. import _semconv as sc
from .._redact import redact_text
from ..propagation.xray import to_xray_trace_id

__all__ = ['SegmentEncoder', 'DAEMON_HEADER', 'MAX_DATAGRAM_BYTES', 'MAX_FRAMES']

#: The daemon's protocol header, before every document (as the AWS documentation writes it).
DAEMON_HEADER = '{"format": "json", "version": 1}\n'
#: The largest datagram (header and document) the encoder produces, in bytes.
MAX_DATAGRAM_BYTES = 64000
#: Stack frames kept per exception; the rest are counted in ``truncated``.
MAX_FRAMES = 50
_MAX_EXCEPTIONS = 10
_MAX_ANNOTATIONS = 50
_NAME_LENGTH = 200
_SHORT_LENGTH = 250
_SDK = 'falcon-tracing-wsgi for Python'

_SEGMENT_KINDS = frozenset(('server', 'consumer'))
_REMOTE_KINDS = frozenset(('client', 'producer'))
_CONSUMED = frozenset(('span.kind', 'http.method', 'http.url', 'http.status_code',
                       'http.response_size', 'peer.ipv4', 'peer.ipv6', 'peer.service',
                       'error', 'http.request.header.user-agent',
                       # the same values under OpenTelemetry's stable names (_semconv.py)
                       sc.REQUEST_METHOD, sc.METHOD_ORIGINAL, sc.RESPONSE_STATUS_CODE,
                       sc.URL_FULL, sc.USER_AGENT))
#: The request method as sent: the stable name holds _OTHER for unknown methods.
_METHOD_NAMES = (sc.HTTP_METHOD, sc.METHOD_ORIGINAL, sc.REQUEST_METHOD)
_USER_AGENT_NAMES = ('http.request.header.user-agent', sc.USER_AGENT)
_CLIENT_IP_NAMES = (sc.PEER_IPV4, sc.PEER_IPV6, sc.NETWORK_PEER_ADDRESS)
_HOST_NAMES = (sc.PEER_HOSTNAME, sc.SERVER_ADDRESS, sc.PEER_IPV4, sc.PEER_IPV6)
_TRACE_ID = re.compile(r'[0-9a-f]{16}|[0-9a-f]{32}')
_SPAN_ID = re.compile(r'[0-9a-f]{16}')
# X-Ray names: Unicode letters, digits, whitespace and _ . : / % & # = + \ - @
_NAME_BAD = re.compile(r'[^\w\s.:/%&#=+\\@-]')
_ANNOTATION_BAD = re.compile(r'[^A-Za-z0-9_]')
_URL_HOST = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]/]*\]|[^:/?#]+)')
_FRAME = re.compile(r'^\s*File "([^"\n]*)", line (\d+), in ([^\n]+)$', re.MULTILINE)
_ERROR_FIELDS = ('error.kind', 'error.object')
# What the span limits dropped, as OpenTelemetry names it for formats without OTLP's fields.
_DROPPED_COUNTS = (('otel.dropped_attributes_count', 'dropped_attributes_count'),
                   ('otel.dropped_events_count', 'dropped_events_count'))


def _server_url(tags: dict[str, Any]) -> Optional[str]:
    """A server span's URL from the stable conventions' parts (they have no whole URL)."""
    path = tags.get(sc.URL_PATH)
    host = tags.get(sc.SERVER_ADDRESS)
    if path is None or host is None:
        return None
    scheme = tags.get(sc.URL_SCHEME) or 'http'
    host = _text(host)
    if ':' in host:
        host = f'[{host}]'
    port = tags.get(sc.SERVER_PORT)
    if port is not None and port != {'http': 80, 'https': 443}.get(scheme):
        host = f'{host}:{port}'
    query = tags.get(sc.URL_QUERY)
    url = f'{scheme}://{host}{path}'
    return f'{url}?{query}' if query else url


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, BaseException):
        return f'{type(value).__name__}: {value}'
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the span
        return '<unprintable>'


def _scalar(value: Any, limit: int) -> Any:
    """A JSON-safe scalar: str (cut), bool, int, finite float; anything else as text."""
    if value is True or value is False or type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else str(value)
    return _text(value)[:limit]


def _log_scalar(value: Any, limit: int) -> Any:
    """A log field as a JSON-safe scalar, with URL secrets in its text redacted."""
    scalar = _scalar(value, limit)
    return redact_text(scalar) if type(scalar) is str else scalar


def _status(value: Any) -> Optional[int]:
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 3:
        return int(value)
    return None


def _name(text: str) -> str:
    name = _NAME_BAD.sub('_', text)[:_NAME_LENGTH].strip()
    return name or 'unknown'


def _annotation_key(key: str) -> str:
    return _ANNOTATION_BAD.sub('_', key)[:_SHORT_LENGTH] or '_'


def _random_id() -> str:
    bits = _getrandbits(64)
    while not bits:
        bits = _getrandbits(64)
    return bits.to_bytes(8, 'big').hex()


class SegmentEncoder:
    """Turns a finished span into one datagram text for the X-Ray daemon.

    Args:
        service_name: the name of every segment (the node in X-Ray's service map).
        tags: process-wide ``(key, value)`` tags, sent as annotations on every document.
        working_directory: the process's working directory, for exception causes; frame
            paths under it are written relative to it.
        sdk_version: the version written in the segment's ``aws.xray.sdk_version``.
        max_value_length: strings (URLs, tag values, messages) are cut to this length.
        max_datagram_bytes: the largest datagram, header included.

    Raises:
        ValueError: an argument is out of range; the message names it.
    """

    __slots__ = ('_service', '_annotations', '_working_directory', '_aws', '_limit',
                 '_max_bytes')

    #: The format's name in log lines.
    name = 'xray'

    def __init__(self, service_name: str, *, tags: Iterable[tuple[str, str]] = (),
                 working_directory: Optional[str] = None,
                 sdk_version: Optional[str] = None, max_value_length: int = 2048,
                 max_datagram_bytes: int = MAX_DATAGRAM_BYTES) -> None:
        if not isinstance(service_name, str) or not service_name.strip():
            raise ValueError(f'SegmentEncoder service_name must be a non-empty string, '
                             f'got {service_name!r}')
        if type(max_value_length) is not int or max_value_length < _SHORT_LENGTH:
            raise ValueError(f'SegmentEncoder max_value_length must be an int >= '
                             f'{_SHORT_LENGTH}, got {max_value_length!r}')
        if type(max_datagram_bytes) is not int or not 4096 <= max_datagram_bytes <= 65507:
            raise ValueError(f'SegmentEncoder max_datagram_bytes must be an int from 4096 '
                             f'to 65507, got {max_datagram_bytes!r}')
        self._service = _name(service_name)
        self._annotations = {_annotation_key(key): _scalar(value, _SHORT_LENGTH)
                             for key, value in list(tags)[:_MAX_ANNOTATIONS - 2]}
        self._working_directory = working_directory
        xray = {'sdk': _SDK}
        if sdk_version:
            xray['sdk_version'] = sdk_version
        self._aws = {'xray': xray}
        self._limit = max_value_length
        self._max_bytes = max_datagram_bytes

    def encode(self, span: Any) -> Optional[str]:
        """The datagram text for ``span`` (daemon header and document), or ``None``.

        ``None`` means the span breaks the Span contract (bad ids) or could not be made
        to fit :data:`MAX_DATAGRAM_BYTES`; the reporter counts it as failed.
        """
        document = self.document(span)
        if document is None:
            return None
        return self._fit(document)

    def document(self, span: Any) -> Optional[dict[str, Any]]:
        """The segment document of ``span`` as a dict, or ``None`` for bad ids."""
        context = span.context
        trace_id, span_id, parent_id = context.trace_id, context.span_id, context.parent_id
        if (type(trace_id) is not str or _TRACE_ID.fullmatch(trace_id) is None
                or type(span_id) is not str or _SPAN_ID.fullmatch(span_id) is None
                or (parent_id is not None and (type(parent_id) is not str
                                               or _SPAN_ID.fullmatch(parent_id) is None))):
            return None
        tags = span.tags or {}
        kind = tags.get('span.kind')
        kind = kind.lower() if isinstance(kind, str) else None
        segment = kind in _SEGMENT_KINDS or parent_id is None
        remote = kind in _REMOTE_KINDS
        start = float(span.start_time)
        limit = self._limit

        document: dict[str, Any] = {
            'name': self._service if segment else _name(self._remote_name(span, tags)
                                                        if remote else span.operation_name),
            'id': span_id,
            'trace_id': to_xray_trace_id(trace_id),
            'start_time': start,
            'end_time': start + max(0.0, float(span.duration or 0.0)),
        }
        if segment:
            if parent_id is not None:
                document['parent_id'] = parent_id
            document['aws'] = self._aws
        else:
            document['type'] = 'subsegment'
            document['parent_id'] = parent_id
            if remote:
                document['namespace'] = 'remote'

        http = self._http(tags, segment)
        if http:
            document['http'] = http
        status = _status(sc.first_of(tags, sc.STATUS_CODE_NAMES))
        if status is not None and 400 <= status < 500:
            document['error'] = True
            if status == 429:
                document['throttle'] = True
        elif (status is not None and status >= 500) or tags.get('error') in (True, 'true'):
            document['fault'] = True

        exceptions, logs = self._logs(span.logs, remote)
        if exceptions:
            cause: dict[str, Any] = {'exceptions': exceptions}
            if self._working_directory:
                cause['working_directory'] = self._working_directory
            document['cause'] = cause

        annotations = dict(self._annotations)
        annotations['operation'] = _text(span.operation_name)[:_SHORT_LENGTH]
        document['annotations'] = annotations

        metadata: dict[str, Any] = {}
        others = {key: _scalar(value, limit) for key, value in tags.items()
                  if key not in _CONSUMED and isinstance(key, str)}
        for name, attribute in _DROPPED_COUNTS:
            count = getattr(span, attribute, 0)
            if count:
                others[name] = _scalar(count, limit)
        if others:
            metadata['tags'] = others
        if logs:
            metadata['logs'] = logs
        if metadata:
            document['metadata'] = {'opentracing': metadata}
        return document

    # -- pieces --------------------------------------------------------------------------

    @staticmethod
    def _remote_name(span: Any, tags: dict[str, Any]) -> str:
        service = tags.get('peer.service')
        if service:
            return _text(service)
        url = sc.first_of(tags, sc.URL_NAMES)
        if isinstance(url, str):
            match = _URL_HOST.match(url)
            if match is not None and match.group(1):
                return match.group(1).strip('[]')
        for key in _HOST_NAMES:
            value = tags.get(key)
            if value:
                return _text(value)
        return _text(span.operation_name)

    def _http(self, tags: dict[str, Any], segment: bool) -> dict[str, Any]:
        limit = self._limit
        request: dict[str, Any] = {}
        method = sc.first_of(tags, _METHOD_NAMES)
        if method is not None:
            request['method'] = _text(method)[:_SHORT_LENGTH]
        url = sc.first_of(tags, sc.URL_NAMES)
        if url is None and segment:
            url = _server_url(tags)
        if url is not None:
            request['url'] = _text(url)[:limit]
        if segment:
            address = sc.first_of(tags, _CLIENT_IP_NAMES)
            if address:
                request['client_ip'] = _text(address)[:_SHORT_LENGTH]
            agent = sc.first_of(tags, _USER_AGENT_NAMES)
            if agent is not None:
                request['user_agent'] = _text(agent)[:limit]
        response: dict[str, Any] = {}
        status = _status(sc.first_of(tags, sc.STATUS_CODE_NAMES))
        if status is not None:
            response['status'] = status
        if segment:
            size = tags.get('http.response_size')
            if type(size) is int and size >= 0:
                response['content_length'] = size
        http: dict[str, Any] = {}
        if request:
            http['request'] = request
        if response:
            http['response'] = response
        return http

    def _logs(self, logs: Any, remote: bool) -> tuple[list[dict[str, Any]], list[Any]]:
        """Split the span's logs into X-Ray exceptions and plain log records."""
        exceptions: list[dict[str, Any]] = []
        plain: list[Any] = []
        if not logs:
            return exceptions, plain
        limit = self._limit
        for timestamp, fields in logs:
            if not isinstance(fields, dict):
                continue
            event = fields.get('event')
            # NOTE: a type test first: a value whose '==' has no truth value (an array)
            # must not make the span unencodable.
            if (type(event) is str and event == 'error') \
                    or any(key in fields for key in _ERROR_FIELDS):
                if len(exceptions) < _MAX_EXCEPTIONS:
                    exceptions.append(self._exception(fields, remote))
                continue
            record = {'timestamp': timestamp if type(timestamp) is float else
                      _scalar(timestamp, limit)}
            record.update((_text(key), _log_scalar(value, limit))
                          for key, value in fields.items())
            plain.append(record)
        return exceptions, plain

    def _exception(self, fields: dict[str, Any], remote: bool) -> dict[str, Any]:
        limit = self._limit
        error = fields.get('error.object')
        kind = fields.get('error.kind')
        if kind is None and isinstance(error, BaseException):
            kind = type(error).__name__
        message = fields.get('message')
        if message is None and isinstance(error, BaseException):
            message = str(error)
        entry: dict[str, Any] = {'id': _random_id()}
        if kind is not None:
            entry['type'] = _text(kind)[:_SHORT_LENGTH]
        if message is not None:
            # NOTE: exception texts often quote the URL they failed on.
            entry['message'] = redact_text(_text(message))[:limit]
        if remote:
            entry['remote'] = True
        stack = fields.get('stack')
        if stack is None and isinstance(error, BaseException):
            stack = error.__traceback__
        frames = self._frames(stack)
        if frames:
            entry['stack'] = frames[:MAX_FRAMES]
            if len(frames) > MAX_FRAMES:
                entry['truncated'] = len(frames) - MAX_FRAMES
        return entry

    def _frames(self, stack: Any) -> list[dict[str, Any]]:
        """Stack frames, innermost first, from a traceback text or object."""
        if isinstance(stack, str):
            found = [(path, int(line), label.strip())
                     for path, line, label in _FRAME.findall(stack)]
        elif isinstance(stack, types.TracebackType):
            found = [(frame.filename, frame.lineno or 0, frame.name)
                     for frame in traceback.extract_tb(stack)]
        else:
            return []
        found.reverse()
        prefix = self._working_directory.rstrip('/') + '/' if self._working_directory else None
        frames = []
        for path, line, label in found:
            if prefix is not None and path.startswith(prefix):
                path = path[len(prefix):]
            frames.append({'path': path[:self._limit], 'line': line,
                           'label': label[:_SHORT_LENGTH]})
        return frames

    # -- size ----------------------------------------------------------------------------

    def _fit(self, document: dict[str, Any]) -> Optional[str]:
        text = DAEMON_HEADER + json.dumps(document, ensure_ascii=True, allow_nan=False,
                                          separators=(',', ':'))
        if len(text) <= self._max_bytes:
            return text
        document['annotations']['truncated'] = True
        for step in (_drop_metadata, _drop_stacks, _drop_causes, _cut_strings):
            if not step(document):
                continue
            text = DAEMON_HEADER + json.dumps(document, ensure_ascii=True, allow_nan=False,
                                              separators=(',', ':'))
            if len(text) <= self._max_bytes:
                return text
        return None


def _drop_metadata(document: dict[str, Any]) -> bool:
    return document.pop('metadata', None) is not None


def _drop_stacks(document: dict[str, Any]) -> bool:
    changed = False
    for entry in document.get('cause', {}).get('exceptions', ()):
        if entry.pop('stack', None) is not None:
            entry.pop('truncated', None)
            changed = True
    return changed


def _drop_causes(document: dict[str, Any]) -> bool:
    return document.pop('cause', None) is not None


def _cut_strings(document: dict[str, Any]) -> bool:
    for part in document.get('http', {}).values():
        for key, value in part.items():
            if isinstance(value, str):
                part[key] = value[:_SHORT_LENGTH]
    return True
