"""Zipkin v2 JSON encoding of finished spans: pure functions of the span, no I/O.

Design (decided for speed, because encoding is most of a reporter's CPU cost and runs
on a thread that shares the GIL with the requests being served):

* One span becomes the **text** of one Zipkin v2 JSON object, built with string joins,
  not a dict handed to :func:`json.dumps`. The fixed parts are written once: the
  ``localEndpoint`` fragment is rendered when the encoder is built, and each tag key's
  ``"key":`` fragment is cached (a bounded cache, so a program that invents tag keys
  cannot grow it without limit). Only strings from the outside (names, tag values,
  annotation values, remote service names) go through the C string escaper
  (:func:`json.encoder.encode_basestring_ascii`). The result is pure ASCII (non-ASCII
  and lone surrogates become ``\\uXXXX`` escapes), so a batch can always be encoded to
  bytes and parses the same everywhere.
* Where the time goes (``python benchmarks/bench_reporter.py --quick``, line ``encode
  pieces``, a real 11-tag server span, on the 2-core development machine): ~1.8 us for
  the fixed part (ids check, name, two ``round()``, the head f-string, the endpoints),
  ~0.2 us per plain tag (most hit the ``"key":"value"`` pair cache: two dict lookups and
  an append), ~0.6 us to lift ``span.kind`` and ``peer.*`` into ``kind`` and
  ``remoteEndpoint``: ~4.3 us in all. Measured and rejected: a plan cached per tag-key
  sequence (``tuple(tags)``) with a ``str.format`` template, fed by C-level passes
  (``map(type)`` to check the types, ``map(str)``, ``map(escape)``): the same span took
  ~7 us, because on 11 values each C pass still costs 0.4-1 us and ``str.format`` with
  11 fields ~0.9 us, more than the pair cache's loop it replaces.
* **The wrapper's server span is written from its fields.** A
  :class:`~falcon_tracing_wsgi.tracer.span.ServerSpan` holds the standard HTTP tags as
  fields; unless a tag set through the API (or a process tag) has one of their names,
  :meth:`JsonV2Encoder.encode` writes them with one template and never merges them
  into the span's dict. What a span shares with the other requests of its shape (name,
  kind, method, component, status, route, the route's tags, the process tags, the local
  endpoint) is one text made once per shape (``_server_shape``; the route's tags are the
  same dict for every request of the route); a request writes only its ids, times,
  peer, URL, size and abort, first, then the shape's text (JSON members have no order).
  A valid peer address's ``remoteEndpoint`` text up to the port is kept too. Its ids are
  not checked again: a ServerSpan is made only by the WSGI wrapper, from the tracer's
  id generator and ``extract()``, whose ids the tracer guarantees (see
  :mod:`falcon_tracing_wsgi.tracer.context`). The JSON is the same as for the merged
  tags (a test compares the two in every request shape, and one encoder across shapes).
  Measured on a real span (timeit, same machine): 1.9 us, against 2.5 us with the id
  check and the shape's text in four parts, 3.15 us with the fields but no shape cache
  and 4.36 us through the dict.
* The encoder never raises for bad *values*: anything that is not a ``str``, ``bool``,
  ``int`` or ``float`` is turned into text with ``str()`` (and a failing ``__str__``
  gives a placeholder), and every string is cut to ``max_value_length`` characters.
  A span whose ids are not lower-case hex of their wire width (a contract violation
  elsewhere) is skipped: :meth:`JsonV2Encoder.encode` returns ``None`` so one bad span cannot make
  the collector reject a whole batch.
* Ids are copied as they are. The :class:`~falcon_tracing_wsgi.tracer.context.SpanContext`
  contract says they are lower-case hex of their exact width; the encoder checks that
  again for every span but the wrapper's server span (cheaply, see ``PERF`` in
  :meth:`JsonV2Encoder.encode`), because the ids are written into the JSON text
  unescaped and a bad one (a hand-made parent context) would make Zipkin refuse the
  batch.
* Mapping from OpenTracing tags (``opentracing.ext.tags``):

  - ``span.kind`` (``server``/``client``/``producer``/``consumer``, any case) becomes
    ``kind`` in upper case and is removed from the tags; any other value stays a tag.
  - ``peer.service``, ``peer.ipv4``, ``peer.ipv6`` and ``peer.port`` become the
    ``remoteEndpoint`` and are removed from the tags. A value that is not valid for
    Zipkin (an ``ipv4`` that is not a dotted quad, a port outside 1..65535, ...) stays
    a tag instead, so nothing is lost and the collector never rejects the span for it.
    ``peer.hostname`` has no Zipkin field and stays a tag.
  - Without any ``peer.*`` tag, the ``remoteEndpoint`` is filled from OpenTelemetry's
    stable names (``FALCON_TRACING_HTTP_SEMCONV=stable``): ``network.peer.address`` and
    ``network.peer.port``, else, on a client span, ``server.address`` (an IP literal)
    and ``server.port``. Those tags stay tags: they are what the user asked to see.
  - Every other tag value becomes a string: ``True`` -> ``"true"``, ``200`` -> ``"200"``.

* Logs become annotations: a log whose only field is ``event`` is annotated with the
  event alone (``"error"``, ``"cache-miss"``); any other log becomes a compact
  ``k=v k=v`` text in the order the fields were logged (exception types by name,
  exceptions as ``Type: message``, a traceback as its innermost frame). URL secrets in
  that text (``?token=...``, ``user:password@``) are redacted with the default names,
  as exception texts often quote the URL they failed on (the middleware's own error logs
  are redacted with the configured names already). Annotations are de-duplicated,
  because Zipkin requires them to be unique.
* ``name`` is the operation name as given. Zipkin itself lower-cases span names when it
  stores them; doing it here as well would only hide what the application set.
* References other than the parent (``span.references``: ``FOLLOWS_FROM`` and further
  references, which OTLP writes as links) are not written: Zipkin v2 has no field for
  them, and a made-up tag would be searchable in no Zipkin UI. The parent stays
  ``parentId``.
* What the tracer's span limits dropped is reported as the tags
  ``otel.dropped_attributes_count`` and ``otel.dropped_events_count`` (OpenTelemetry's
  mapping for formats without OTLP's fields), only when not zero.
* ``debug: true`` is written only for a debug-flagged context (B3 ``X-B3-Flags: 1``);
  ``shared`` is never written, because every server span is a child span with its own id.
"""

from __future__ import annotations

import ipaddress
import re
import traceback
import types
from json.encoder import encode_basestring_ascii as _c_escape
from collections.abc import Mapping
from typing import Any, Optional

from .._redact import redact_text
from ..tracer.span import SERVER_FIELD_TAGS, ServerSpan
from ._framing import Body, BodyBuffer, join_text

__all__ = ['Endpoint', 'JsonV2Encoder', 'DEFAULT_MAX_VALUE_LENGTH',
           'DROPPED_ATTRIBUTES_TAG', 'DROPPED_EVENTS_TAG']

#: Tag values, annotation values and names longer than this are cut (characters).
DEFAULT_MAX_VALUE_LENGTH = 4096
#: Tags that report what a span's limits dropped: OpenTelemetry's names for formats
#: without OTLP's ``dropped_attributes_count`` / ``dropped_events_count`` fields.
DROPPED_ATTRIBUTES_TAG = 'otel.dropped_attributes_count'
DROPPED_EVENTS_TAG = 'otel.dropped_events_count'

_KIND_FRAGMENTS = {kind: f',"kind":"{kind.upper()}"'
                   for kind in ('server', 'client', 'producer', 'consumer')}
# OpenTelemetry's stable names of the same peer (see _semconv.py; not imported, so this
# format module stays free of package imports).
_NETWORK_PEER_ADDRESS = 'network.peer.address'
_NETWORK_PEER_PORT = 'network.peer.port'
_SERVER_ADDRESS = 'server.address'
_SERVER_PORT = 'server.port'
_PEER_TAGS = frozenset(('span.kind', 'peer.service', 'peer.ipv4', 'peer.ipv6', 'peer.port'))
_DOTTED_QUAD = re.compile(r'(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}'
                          r'(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)')
# Bounds of the small caches below: they hold a program's (few) distinct tag keys and
# peer addresses; a program that makes up keys or talks to many peers simply stops
# caching, it never grows memory.
_KEY_CACHE_SIZE = 1024
# The finished '"key":"value"' text of repeated values: for at most this many keys, this
# many values each, of at most this many characters (a few hundred kB at worst; a
# high-cardinality tag such as http.url simply stops being cached when its slots are full).
_PAIR_CACHE_KEYS = 64
_PAIR_CACHE_VALUES = 32
_PAIR_CACHE_LENGTH = 128
_ADDRESS_CACHE_SIZE = 1024
#: Server-span shapes whose text is kept (about one per route and status of the app,
#: see JsonV2Encoder._server_shape).
_SERVER_SHAPES_SIZE = 1024
_UNPRINTABLE = '<unprintable>'
# Fixed text of a server span (see JsonV2Encoder.encode).
_PARENT_HEAD = ',"parentId":"'
_RESPONSE_SIZE_HEAD = ',"http.response_size":"'
_ABORTED = ',"http.aborted":"true"'
_DEBUG = ',"debug":true'
_QUOTE = '"'
#: See JsonV2Encoder._server_shape.
_ServerShape = tuple[Any, bool, str, str, str]
_HEX_DIGITS = b'0123456789abcdef'
_ABSENT: Any = object()  # "no such tag", distinct from a tag whose value is None


def _valid_ipv4(value: str) -> bool:
    return _DOTTED_QUAD.fullmatch(value) is not None


def _valid_ipv6(value: str) -> bool:
    if '%' in value or not value.isascii():  # no scope ids: Zipkin stores bare addresses
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _valid_port(value: Any) -> Optional[int]:
    """The port as an int when it is a valid Zipkin port (1..65535), else None."""
    if type(value) is int:
        port = value
    elif type(value) is str and value.isdigit() and value.isascii() and len(value) <= 5:
        port = int(value)
    else:
        return None
    return port if 0 < port < 65536 else None


class Endpoint:
    """The network identity of a service, as Zipkin's ``localEndpoint`` records it.

    Args:
        service_name: the service's name in the Zipkin UI (Zipkin lower-cases it).
        ipv4: the service's IPv4 address as a dotted quad, if known.
        ipv6: the service's IPv6 address, if known.
        port: the port the service listens on (1..65535), if known.

    Raises:
        ValueError: a field is not valid for Zipkin; the message names it.
    """

    __slots__ = ('service_name', 'ipv4', 'ipv6', 'port')

    def __init__(self, service_name: str, ipv4: Optional[str] = None,
                 ipv6: Optional[str] = None, port: Optional[int] = None) -> None:
        if not isinstance(service_name, str) or not service_name:
            raise ValueError(f'Endpoint service_name must be a non-empty string, '
                             f'got {service_name!r}')
        if ipv4 is not None and not (isinstance(ipv4, str) and _valid_ipv4(ipv4)):
            raise ValueError(f'Endpoint ipv4 must be a dotted quad such as "10.0.0.7", '
                             f'got {ipv4!r}')
        if ipv6 is not None and not (isinstance(ipv6, str) and _valid_ipv6(ipv6)):
            raise ValueError(f'Endpoint ipv6 must be an IPv6 address without a scope id, '
                             f'got {ipv6!r}')
        if port is not None and (type(port) is not int or not 0 < port < 65536):
            raise ValueError(f'Endpoint port must be an int in 1..65535, got {port!r}')
        self.service_name = service_name
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.port = port

    def to_dict(self) -> dict[str, Any]:
        """The Zipkin v2 JSON object for this endpoint (absent fields left out)."""
        out: dict[str, Any] = {'serviceName': self.service_name}
        if self.ipv4 is not None:
            out['ipv4'] = self.ipv4
        if self.ipv6 is not None:
            out['ipv6'] = self.ipv6
        if self.port is not None:
            out['port'] = self.port
        return out

    def to_json(self) -> str:
        """The same object as compact JSON text (ASCII)."""
        return _endpoint_json(self.service_name, self.ipv4, self.ipv6, self.port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return (self.service_name, self.ipv4, self.ipv6, self.port) == (
            other.service_name, other.ipv4, other.ipv6, other.port)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f'Endpoint(service_name={self.service_name!r}, ipv4={self.ipv4!r}, '
                f'ipv6={self.ipv6!r}, port={self.port!r})')


def _endpoint_json(service_name: Optional[str], ipv4: Optional[str], ipv6: Optional[str],
                   port: Optional[int]) -> str:
    parts = []
    if service_name is not None:
        parts.append('"serviceName":' + _c_escape(service_name))
    if ipv4 is not None:
        parts.append('"ipv4":"' + ipv4 + '"')
    if ipv6 is not None:
        parts.append('"ipv6":"' + ipv6 + '"')
    if port is not None:
        parts.append('"port":' + str(port))
    return '{' + ','.join(parts) + '}'


def _text(value: Any) -> str:
    """Any tag value as text (never raises)."""
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the span
        return _UNPRINTABLE


def _tag_pair(key: str, value: Any, limit: int) -> str:
    """'"key":"value"' for a tag that could not become a Zipkin field."""
    text = value if type(value) is str else _text(value)
    return f'"{key}":{_c_escape(text[:limit])}'


def _log_value_text(value: Any) -> str:
    """One log field value as compact text (errors and types read well)."""
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, BaseException):
        message = _text(value)
        return f'{type(value).__qualname__}: {message}' if message else type(value).__qualname__
    if isinstance(value, types.TracebackType):
        try:
            frames = traceback.extract_tb(value)
            last = frames[-1]
            return f'{last.filename}:{last.lineno} in {last.name}'
        except Exception:
            return 'traceback'
    return _text(value)


def _annotation_value(fields: Any, limit: int) -> str:
    if isinstance(fields, dict):
        if len(fields) == 1 and 'event' in fields:
            value = _log_value_text(fields['event'])
        else:
            pieces = []
            size = 0
            for key, item in fields.items():
                piece = f'{_text(key)}={_log_value_text(item)}'
                pieces.append(piece)
                size += len(piece) + 1
                if size > limit:  # stop formatting what would be cut anyway
                    break
            value = ' '.join(pieces)
    else:
        value = _text(fields)
    value = redact_text(value)
    return value if len(value) <= limit else value[:limit]


def _with_dropped_counts(attributes: Any, events: Any, tags_json: str) -> str:
    """Add the OpenTelemetry tags for what the span limits dropped (non-OTLP mapping)."""
    extra = [f'"{tag}":{_c_escape(_text(count))}' for tag, count in (
        (DROPPED_ATTRIBUTES_TAG, attributes), (DROPPED_EVENTS_TAG, events)) if count]
    if tags_json:
        return tags_json[:-1] + ',' + ','.join(extra) + '}'
    return ',"tags":{' + ','.join(extra) + '}'


class JsonV2Encoder:
    """Encodes finished spans as Zipkin v2 JSON objects.

    Args:
        local_endpoint: this service's :class:`Endpoint`, written as ``localEndpoint``
            on every span.
        max_value_length: the longest name, tag value or annotation value (characters);
            longer ones are cut.
        process_tags: tags added to every span (``FALCON_TRACING_TAGS``, the gunicorn
            worker identity); a span's own tag of the same name wins. Their JSON is built
            once here.

    The encoder is safe to share between threads: the only state it changes is two small
    caches, and a lost cache insert costs nothing but a later miss.
    """

    __slots__ = ('local_endpoint', 'max_value_length', '_local_fragment', '_key_cache',
                 '_pair_cache', '_address_cache', 'process_tags',
                 '_process_pairs', '_process_keys', '_process_text', '_process_apart',
                 '_server_shapes', '_peer_prefixes')

    #: The format's name in log lines.
    name = 'zipkin'
    #: The media type of :meth:`frame`'s body.
    content_type = 'application/json'

    def __init__(self, local_endpoint: Endpoint, *,
                 max_value_length: int = DEFAULT_MAX_VALUE_LENGTH,
                 process_tags: Optional[Mapping[str, str]] = None) -> None:
        if not isinstance(local_endpoint, Endpoint):
            raise TypeError(f'local_endpoint must be an Endpoint, got {local_endpoint!r}')
        if isinstance(max_value_length, bool) or not isinstance(max_value_length, int) \
                or max_value_length < 16:
            raise ValueError(f'max_value_length must be an int >= 16, got {max_value_length!r}')
        self.local_endpoint = local_endpoint
        self.max_value_length = max_value_length
        self._local_fragment = ',"localEndpoint":' + local_endpoint.to_json()
        # '"key":' per tag key; None marks the keys that map to Zipkin fields instead.
        self._key_cache: dict[str, Optional[str]] = dict.fromkeys(_PEER_TAGS)
        # tag key -> {value: '"key":"value"'}; see _PAIR_CACHE_KEYS.
        self._pair_cache: dict[str, dict[Any, str]] = {}
        self._address_cache: dict[str, bool] = {}
        self.process_tags = dict(process_tags or {})
        self._process_pairs = tuple(
            (key, _tag_pair(key, value, max_value_length))
            for key, value in self.process_tags.items())
        # PERF: the usual span has none of the process tags' keys: their text is ready.
        self._process_keys = frozenset(self.process_tags)
        self._process_text = ','.join(pair for _, pair in self._process_pairs)
        # (name, method, component, status, route) -> what a ServerSpan of that shape
        # shares with the others; see _server_shape.
        self._server_shapes: dict[Any, _ServerShape] = {}
        # A valid peer address -> ',"remoteEndpoint":{"ipv4":"address","port":'.
        self._peer_prefixes: dict[Optional[str], str] = {}
        # Whether no process tag has the name of one of a ServerSpan's fields.
        self._process_apart = self._process_keys.isdisjoint(SERVER_FIELD_TAGS)

    def encode(self, span: Any) -> Optional[str]:
        """Encode one finished span as the text of one Zipkin v2 JSON object.

        Args:
            span: a finished span (the Span contract: ``context``, ``operation_name``,
                ``start_time``, ``duration``, ``tags``, ``logs``).

        Returns:
            The JSON text (ASCII), or ``None`` when the span's ids are not lower-case hex
            of their wire width (the span is then skipped, not sent; the wrapper's
            server span is trusted, see the module docstring).
        """
        limit = self.max_value_length
        if type(span) is ServerSpan and not span.merged:
            # PERF: the wrapper's server span: its standard tags are fields, written
            # with one template below, unless a tag set through the API or a process
            # tag has one of their names (shape[1] false: the merged dict is encoded).
            own = span._tags
            route_tags = span.route_tags
            if not own:
                # PERF: what a route's requests share (name, method, component, status,
                # route, route tags) is text made once per shape; see _server_shape.
                try:
                    key: Any = (span.operation_name, span.method, span.component,
                                span.status_code, span.route)
                    shape = self._server_shapes.get(key)
                except TypeError:  # an unhashable value set by hand: no cache
                    key = shape = None
                if shape is None or shape[0] is not route_tags:
                    shape = self._server_shape(span, own, route_tags, limit, key)
            elif own.keys().isdisjoint(SERVER_FIELD_TAGS):
                shape = self._server_shape(span, own, route_tags, limit, None)
            else:
                shape = None
            if shape is not None and shape[1]:
                # PERF: the wrapper's server span, written here (no call). The ids are
                # not checked: a ServerSpan is made only by the WSGI wrapper, from the
                # tracer's id generator and extract(), whose ids the tracer guarantees
                # (see tracer/context.py). The usual peer (a valid address, a valid
                # port) is a prefix made once per address, then the port.
                context = span._context
                parent_id = context.parent_id
                port: Any = span.peer_port
                prefix = self._peer_prefixes.get(span.peer_address)
                if prefix is not None and type(port) is int and 0 < port < 65536:
                    close = '}'
                    invalid = ''
                else:
                    # the whole remoteEndpoint (or none) in ``prefix``, nothing after it
                    prefix, invalid = self._server_peer(span.peer_address, port, limit)
                    port = close = ''
                url = span.url
                size = span.response_size
                # PERF: ``x.__round__()`` is round(x) without the builtin's lookup: ~650
                # instructions less for each of the two times (the float times of the
                # wrapper's span, so ``1e6``).
                duration = (span.duration * 1e6).__round__()  # type: ignore[operator]  # finished
                if span.dropped_attributes_count or span.dropped_events_count:
                    tail = _with_dropped_counts(span.dropped_attributes_count,
                                                span.dropped_events_count,
                                                shape[3]) + shape[4]
                else:
                    tail = shape[2]
                logs = span.logs
                # PERF: one f-string for the whole span, the per-request values first
                # and all that the shape fixes as one string at the end (JSON members
                # have no order).
                return (f'{{"traceId":"{context.trace_id}","id":"{context.span_id}"'
                        f'{"" if parent_id is None else _PARENT_HEAD + parent_id + _QUOTE},'
                        f'"timestamp":{(span.start_time * 1e6).__round__()},'
                        f'"duration":{duration if duration > 0 else 1}'
                        f'{_DEBUG if context.debug else ""}{prefix}{port}{close}'
                        f',"tags":{{"http.url":'
                        f'{_c_escape(url if len(url) <= limit else url[:limit])}{invalid}'
                        f'{_RESPONSE_SIZE_HEAD if size else ""}{size or ""}'
                        f'{_QUOTE if size else ""}'
                        f'{_ABORTED if span.aborted else ""}{tail}'
                        f'{self._annotations(logs, limit) if logs else ""}}}')
        context = span.context
        trace_id = context.trace_id
        span_id = context.span_id
        parent_id = context.parent_id
        # PERF: the widths, then one C-level pass over the joined ids (bytes.translate
        # deleting the hex digits leaves nothing) is an exact lower-case hex check at
        # about a third of the cost of a regex.
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
        if not ids.isascii() or ids.encode().translate(None, _HEX_DIGITS):
            return None

        # PERF: round(x) is x.__round__() after a lookup; the method directly is ~500
        # instructions less (any number type of the Span contract has it).
        duration = (span.duration * 1_000_000).__round__()
        # PERF: the optional pieces are strings joined once at the end (no list).
        debug = ',"debug":true' if context.debug else ''
        name = span.operation_name
        if type(name) is not str:
            name = _text(name)
        if len(name) > limit:
            name = name[:limit]
        # PERF: one f-string for the fixed head; the ids are known-safe (checked above).
        if parent_id is None:
            head = (f'{{"traceId":"{trace_id}","id":"{span_id}","name":{_c_escape(name)},'
                    f'"timestamp":{(span.start_time * 1_000_000).__round__()},'
                    f'"duration":{duration if duration > 0 else 1}')
        else:
            head = (f'{{"traceId":"{trace_id}","parentId":"{parent_id}","id":"{span_id}",'
                    f'"name":{_c_escape(name)},'
                    f'"timestamp":{(span.start_time * 1_000_000).__round__()},'
                    f'"duration":{duration if duration > 0 else 1}')
        kind_json = remote_json = tags_json = annotations_json = ''

        tags = span.tags
        pairs: list[str] = []
        if tags:
            kind = service = ipv4 = ipv6 = port = _ABSENT
            cache = self._key_cache
            values = self._pair_cache
            add = pairs.append
            for key, value in tags.items():
                # PERF: most tag values repeat (component, method, route, status, ...):
                # their finished '"key":"value"' text is one more dict lookup away.
                seen = values.get(key)
                if seen is not None and (type(value) is str or type(value) is int):
                    pair = seen.get(value)
                    if pair is not None:
                        add(pair)
                        continue
                fragment = cache.get(key)
                if fragment is None:
                    # Uncached, or one of the tags that map to Zipkin fields (cached as
                    # None so that the common case costs a single dict lookup).
                    if key == 'span.kind':
                        kind = value
                        continue
                    if key == 'peer.ipv4':
                        ipv4 = value
                        continue
                    if key == 'peer.port':
                        port = value
                        continue
                    if key == 'peer.service':
                        service = value
                        continue
                    if key == 'peer.ipv6':
                        ipv6 = value
                        continue
                    fragment = self._key_fragment(key)
                # PERF: str first (nearly every tag); bool before int (bool is an int).
                if type(value) is str:
                    if len(value) > limit:
                        value = value[:limit]
                    pair = fragment + _c_escape(value)
                elif value is True:
                    pair = fragment + '"true"'
                elif value is False:
                    pair = fragment + '"false"'
                elif type(value) is int:
                    pair = f'{fragment}"{value}"'
                else:
                    text = _text(value)
                    if len(text) > limit:
                        text = text[:limit]
                    pair = fragment + _c_escape(text)
                add(pair)
                if seen is not None and len(seen) < _PAIR_CACHE_VALUES \
                        and (type(value) is int or (type(value) is str
                                                    and len(value) <= _PAIR_CACHE_LENGTH)):
                    seen[value] = pair
            if kind is not _ABSENT:
                fragment = _KIND_FRAGMENTS.get(kind) if type(kind) is str else None
                if fragment is None and type(kind) is str:
                    fragment = _KIND_FRAGMENTS.get(kind.lower())
                if fragment is None:
                    add(_tag_pair('span.kind', kind, limit))
                else:
                    kind_json = fragment
            if ipv4 is not _ABSENT and service is _ABSENT and ipv6 is _ABSENT \
                    and type(port) is int and 0 < port < 65536 and type(ipv4) is str \
                    and self._address_cache.get(ipv4):
                # PERF: the usual server span (peer address and port, both valid) skips
                # the general method below.
                remote_json = f',"remoteEndpoint":{{"ipv4":"{ipv4}","port":{port}}}'
            elif service is not _ABSENT or ipv4 is not _ABSENT or port is not _ABSENT \
                    or ipv6 is not _ABSENT:
                remote_json = self._remote_endpoint(service, ipv4, ipv6, port, add, limit)
            else:
                # PERF: reached only by spans without peer.* tags (stable names, internal
                # spans): two dict lookups.
                remote_json = self._stable_remote_endpoint(tags, kind)
        if self._process_text:
            if not tags or self._process_keys.isdisjoint(tags):
                add_process = self._process_text
            else:  # a span's own tag of the same name wins
                add_process = ','.join(pair for key, pair in self._process_pairs
                                       if key not in tags)
            if add_process:
                pairs.append(add_process)
        if pairs:
            tags_json = ',"tags":{' + ','.join(pairs) + '}'
        # Any span-like object may be encoded: the counts are optional attributes.
        dropped_attributes = getattr(span, 'dropped_attributes_count', 0)
        dropped_events = getattr(span, 'dropped_events_count', 0)
        if dropped_attributes or dropped_events:
            tags_json = _with_dropped_counts(dropped_attributes, dropped_events, tags_json)

        logs = span.logs
        if logs:
            annotations_json = self._annotations(logs, limit)
        return (f'{head}{debug}{kind_json}{remote_json}{tags_json}{self._local_fragment}'
                f'{annotations_json}}}')

    def _server_peer(self, address: Optional[str], port: Optional[int], limit: int
                     ) -> tuple[str, str]:
        """A ServerSpan's ``remoteEndpoint`` fragment and the ``,"tag":...`` text of the
        peer values that cannot go there (the general rules of :meth:`encode`)."""
        invalid: list[str] = []
        if address is None:
            remote = ('' if port is None
                      else self._remote_endpoint(_ABSENT, _ABSENT, _ABSENT, port,
                                                 invalid.append, limit))
        else:
            ipv6 = ':' in address
            remote = self._remote_endpoint(
                _ABSENT, _ABSENT if ipv6 else address, address if ipv6 else _ABSENT,
                _ABSENT if port is None else port, invalid.append, limit)
            if not invalid and type(port) is int and 0 < port < 65536:
                # A valid address: its text up to the port, for the next span from it.
                prefixes = self._peer_prefixes
                if len(prefixes) >= _ADDRESS_CACHE_SIZE:
                    prefixes.clear()
                prefixes[address] = (f',"remoteEndpoint":{{"{"ipv6" if ipv6 else "ipv4"}":'
                                     f'"{address}","port":')
        return remote, ''.join(',' + pair for pair in invalid)

    def _server_shape(self, span: Any, own: dict[str, Any],
                      route_tags: Optional[Mapping[str, Any]], limit: int,
                      key: Any) -> _ServerShape:
        """The text a ServerSpan shares with the other requests of its shape, cached by
        ``key`` when the span has no tags set through the API.

        Returns ``(route_tags, whether the fields may be written as such (no process
        tag has the name of a field or of one of the span's tags), the span's text
        after its ``"http.url"`` and per-request tags, that text's two parts: the rest
        of the tags (component, method, status, route, route tags, API tags, process
        tags and the closing brace) and the rest of the object (name, kind, local
        endpoint))``. The route tags are kept in the entry and compared by identity: a
        framework hands the same dict for every request of a route (the span's
        ``route_tags``, never changed once handed over); another dict makes
        the entry again. The cache is bounded (cleared when full): names set by an app
        through the API could otherwise grow it without end.
        """
        name = span.operation_name
        if type(name) is not str:
            name = _text(name)
        method = span.method
        if type(method) is not str:
            method = _text(method)
        component = span.component
        if type(component) is not str:
            component = _text(component)
        code = span.status_code
        status = ('' if not code else f',"http.status_code":"{code}"' if code < 500
                  else f',"http.status_code":"{code}","error":"true"')
        route = span.route
        if route:
            if type(route) is not str:
                route = _text(route)
            route_json = ',"http.route":' + _c_escape(route[:limit])
        else:
            route_json = ''
        extras = ''.join(',' + self._plain_pair(tag, value, limit)
                         for tag, value in own.items()) if own else ''
        if route_tags:
            # a route tag the API set too is the API's
            extras += ''.join(',' + self._plain_pair(tag, value, limit)
                              for tag, value in route_tags.items()
                              if not own or tag not in own)
        process = self._process_keys
        process = self._process_keys
        tags_tail = (f',"component":{_c_escape(component[:limit])},'
                     f'"http.method":{_c_escape(method[:limit])}{status}{route_json}{extras}'
                     f'{"," + self._process_text if self._process_text else ""}}}')
        object_tail = f',"name":{_c_escape(name[:limit])},"kind":"SERVER"{self._local_fragment}'
        shape = (route_tags,
                 # a process tag never takes the name of a field or of a tag of the span
                 not process or (self._process_apart
                                 and (not own or process.isdisjoint(own))
                                 and (not route_tags or process.isdisjoint(route_tags))),
                 tags_tail + object_tail, tags_tail, object_tail)
        if key is not None and not own:
            if len(self._server_shapes) >= _SERVER_SHAPES_SIZE:
                self._server_shapes.clear()
            self._server_shapes[key] = shape
        return shape

    def _plain_pair(self, key: Any, value: Any, limit: int) -> str:
        """'"key":"value"' of a tag that maps to no Zipkin field (as in :meth:`encode`)."""
        fragment = self._key_cache.get(key) if type(key) is str else None
        if fragment is None:
            fragment = self._key_fragment(key)
        if type(value) is str:
            return fragment + _c_escape(value if len(value) <= limit else value[:limit])
        if value is True:
            return fragment + '"true"'
        if value is False:
            return fragment + '"false"'
        if type(value) is int:
            return f'{fragment}"{value}"'
        text = _text(value)
        return fragment + _c_escape(text if len(text) <= limit else text[:limit])

    @staticmethod
    def frame(pieces: list[str]) -> bytes:
        """The body of one ``POST /api/v2/spans``: the encoded spans as a JSON array."""
        return join_text(pieces, '[', ',', ']')

    @staticmethod
    def frame_into(pieces: list[str], buffer: BodyBuffer) -> Body:
        """:meth:`frame`, a large body written into ``buffer`` (see ``_framing``)."""
        return join_text(pieces, '[', ',', ']', buffer)

    def _key_fragment(self, key: Any) -> str:
        """The '"key":' fragment of a tag key, cached while the cache has room."""
        text = key if type(key) is str else _text(key)
        if len(text) > self.max_value_length:
            text = text[:self.max_value_length]
        fragment = _c_escape(text) + ':'
        cache = self._key_cache
        if len(cache) < _KEY_CACHE_SIZE and type(key) is str and key not in _PEER_TAGS:
            cache[key] = fragment
            if len(self._pair_cache) < _PAIR_CACHE_KEYS:
                self._pair_cache[key] = {}
        return fragment

    def _remote_endpoint(self, service: Any, ipv4: Any, ipv6: Any, port: Any, add: Any,
                         limit: int) -> str:
        """The ',"remoteEndpoint":{...}' fragment ('' if none); invalid values become tags.

        Arguments are ``_ABSENT`` when the span has no such tag.
        """
        fields = []
        if service is not _ABSENT:
            if type(service) is str and 0 < len(service) <= limit:
                fields.append('"serviceName":' + _c_escape(service))
            else:
                add(_tag_pair('peer.service', service, limit))
        if ipv4 is not _ABSENT:
            # PERF: peers repeat (a proxy, a database): an address is validated once.
            if type(ipv4) is str and (self._address_cache.get(ipv4)
                                      or self._address_ok(ipv4, _valid_ipv4)):
                fields.append('"ipv4":"' + ipv4 + '"')
            else:
                add(_tag_pair('peer.ipv4', ipv4, limit))
        if ipv6 is not _ABSENT:
            # NOTE: cached under a prefix: a text valid as IPv4 ('0.0.0.0') is not IPv6.
            if type(ipv6) is str and self._address_ok('6/' + ipv6, _valid_ipv6, 2):
                fields.append('"ipv6":"' + ipv6 + '"')
            else:
                add(_tag_pair('peer.ipv6', ipv6, limit))
        if port is not _ABSENT:
            valid = port if type(port) is int and 0 < port < 65536 else _valid_port(port)
            if valid is None:
                add(_tag_pair('peer.port', port, limit))
            else:
                fields.append(f'"port":{valid}')
        if not fields:
            return ''
        return ',"remoteEndpoint":{' + ','.join(fields) + '}'

    def _stable_remote_endpoint(self, tags: Any, kind: Any) -> str:
        """The ',"remoteEndpoint":{...}' fragment from the stable HTTP names ('' if none).

        Invalid values are simply not lifted (they are tags already).
        """
        address = tags.get(_NETWORK_PEER_ADDRESS)
        port = tags.get(_NETWORK_PEER_PORT)
        if address is None and port is None:
            if type(kind) is not str or kind.lower() not in ('client', 'producer'):
                return ''
            address = tags.get(_SERVER_ADDRESS)
            port = tags.get(_SERVER_PORT)
        fields = []
        if type(address) is str:
            if self._address_cache.get(address) or self._address_ok(address, _valid_ipv4):
                fields.append('"ipv4":"' + address + '"')
            elif self._address_ok('6/' + address, _valid_ipv6, 2):
                fields.append('"ipv6":"' + address + '"')
        if type(port) is int and 0 < port < 65536:
            fields.append(f'"port":{port}')
        if not fields:
            return ''
        return ',"remoteEndpoint":{' + ','.join(fields) + '}'

    def _address_ok(self, value: str, check: Any, skip: int = 0) -> bool:
        """``check(value[skip:])``, cached under ``value``."""
        cache = self._address_cache
        ok = cache.get(value)
        if ok is None:
            ok = check(value[skip:] if skip else value)
            if len(cache) >= _ADDRESS_CACHE_SIZE:
                cache.clear()
            cache[value] = ok
        return ok

    @staticmethod
    def _annotations(logs: Any, limit: int) -> str:
        seen = set()
        items = []
        for record in logs:
            try:
                timestamp, fields = record
                micros = (timestamp * 1_000_000).__round__()
            except Exception:  # a malformed log record is skipped, never fatal
                continue
            value = _annotation_value(fields, limit)
            if (micros, value) in seen:  # Zipkin requires unique annotations
                continue
            seen.add((micros, value))
            items.append(f'{{"timestamp":{micros},"value":{_c_escape(value)}}}')
        if not items:
            return ''
        return ',"annotations":[' + ','.join(items) + ']'
