"""WSGI helpers for the middleware: the environ header view, URL and peer tags, exclusion
rules, and the response object that finishes the server span.

Decisions recorded here:

* **Exclusion needs no regular expression for the usual rules.** :class:`Exclusion`
  keeps, per request method, a frozenset of exact paths and a tuple of prefixes for
  ``str.startswith``; the middleware runs the test inline. Only OpenTelemetry-style
  patterns use ``re``.

* **Headers are read through a view, never copied.** :class:`EnvironHeaders` maps a
  header name to its ``HTTP_*`` environ key (cached per name), so extracting a context
  costs one dict lookup per header the propagation formats actually read.
* **The span ends when the server closes the response**, from a class (not a generator),
  exactly once: :meth:`TracedResponse.close` closes the app's iterable first, then
  finishes the span. A close before the body was exhausted is tagged ``http.aborted``.
  A generator wrapper would never run its ``finally`` when the server closes the
  response before iterating it, leaving the span open.
* **The span is active while app code runs**: during the app call (done by the
  middleware) and while each body chunk is produced or the iterable is closed (done
  here); afterwards the scope manager is reset to its state before, whatever the app
  left open (``scope.close()`` would do nothing after a leaked scope). A
  ``list``/``tuple`` body runs no app code, so it is iterated without activating
  anything.
* **The in-flight registry is weak** (``id -> weakref``, for gunicorn's worker-abort
  hook): a response the server drops unclosed is collected; its ``__del__`` queues it
  and the next request (or the abort/exit hook) reports its span, ended at the time it
  was collected. ``weakref.finalize`` or a ``WeakSet`` would cost more per request.
* **``wsgi.file_wrapper`` keeps the server's sendfile path.** gunicorn only uses
  ``sendfile()`` when the app returns an instance of its own ``FileWrapper`` class, so
  such a result is re-wrapped *in the same class* around a file proxy whose ``close()``
  finishes the span after the server has sent the file. The server still sees its own
  wrapper and still gets the real file descriptor; the span covers the transfer. Bytes
  sent by ``sendfile`` are what ``socket.sendfile()`` reports (the position it seeks the
  file to), so a transfer the client cut off is tagged ``http.aborted`` like any other
  body.
* **The span describes what was sent.** The status is recorded only once the server's
  ``start_response`` accepted it; an app error before any byte of the body was sent is
  recorded as the 500 the server answers instead; a response the server drops without
  closing it is reported after it is garbage-collected (tagged ``wsgi.unclosed``).
"""

from __future__ import annotations

import logging
import os
import re
import traceback
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from time import time as _time
from typing import TYPE_CHECKING, Any, Callable, Optional

from opentracing import logs as ot_logs
from opentracing import tags as ot_tags

from ._keys import (
    ENVIRON_ERROR_TYPE, ENVIRON_EXCEPTION, TAG_ABORT_REASON, TAG_ABORTED, TAG_RESPONSE_SIZE,
    TAG_ROUTE, TAG_UNCLOSED,
)
from ._redact import DEFAULT_SECRET, Secret, compile_names, redact_query, redact_text
from ._semconv import (
    CLIENT_ADDRESS, KNOWN_METHODS, METHOD_ORIGINAL, NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT,
    NETWORK_PROTOCOL_VERSION, OTHER_METHOD, REQUEST_METHOD, SERVER_ADDRESS, SERVER_PORT,
    URL_PATH, URL_QUERY, URL_SCHEME, USER_AGENT,
)

if TYPE_CHECKING:  # pragma: no cover
    from .config import ExcludeRule

__all__ = ['EnvironHeaders', 'environ_key', 'TracedResponse', 'build_excluder',
           'build_exclusion', 'Exclusion', 'context_ids',
           'build_url_builder', 'build_stable_tagger', 'build_stable_values',
           'STABLE_REQUEST_KEYS', 'record_exception', 'set_tags',
           'finish_unclosed', 'IN_FLIGHT', 'UNCLOSED', 'ENVIRON_EXCEPTION', 'ENVIRON_ERROR_TYPE',
           # the shared names, importable from here as before (defined in _keys)
           'TAG_ROUTE', 'TAG_RESPONSE_SIZE', 'TAG_ABORTED', 'TAG_ABORT_REASON', 'TAG_UNCLOSED']

_log = logging.getLogger(__name__)

#: Responses whose server span is not finished yet, for the gunicorn worker_abort hook:
#: ``id(response) -> weakref.ref(response)``. Weak, so a response the server drops without
#: calling ``close()`` is garbage-collected (and its span finished, see ``__del__``)
#: instead of being kept here forever.
IN_FLIGHT: dict[int, weakref.ref[TracedResponse]] = {}

#: Responses the server dropped without closing them, with the time they were collected:
#: queued by ``TracedResponse.__del__``, finished by :func:`finish_unclosed`.
UNCLOSED: deque[tuple[TracedResponse, float]] = deque()

#: Header values never recorded, even when a capture pattern allows the header.
ALWAYS_REDACTED = frozenset(('authorization', 'proxy-authorization', 'cookie', 'set-cookie'))

_ENV_KEYS: dict[str, str] = {'content-type': 'CONTENT_TYPE', 'content-length': 'CONTENT_LENGTH'}
#: id(names) -> (names, their environ keys) for EnvironHeaders.has_any.
_KEY_SETS: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}


def environ_key(name: str) -> str:
    """Return the WSGI environ key of an HTTP header name (``X-B3-TraceId`` ->
    ``HTTP_X_B3_TRACEID``)."""
    key = _ENV_KEYS.get(name)
    if key is None:
        # PERF: header names come from a small fixed set (the propagation formats), so the
        # cache stays tiny; an unbounded name (uberctx-<key>) is not cached.
        key = 'HTTP_' + name.upper().replace('-', '_')
        if len(_ENV_KEYS) < 256:
            _ENV_KEYS[name] = key
    return key


class EnvironHeaders(Mapping[str, str]):
    """A read-only, case-insensitive mapping view of the request headers in an environ.

    ``get('x-b3-traceid')`` reads ``environ['HTTP_X_B3_TRACEID']``; iteration yields the
    header names (lower-case, ``-`` separated) of the ``HTTP_*`` keys. Nothing is copied.
    """

    __slots__ = ('_environ',)

    #: Tells our tracer the view already answers lower-case names case-insensitively.
    case_insensitive = True

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def has_any(self, names: tuple[str, ...]) -> bool:
        """Whether any of these lower-case header names is present.

        Our tracer asks this before running the propagation formats, so a request that
        carries no trace context (a new trace) costs one C-level test instead of one
        lookup per header each format reads.
        """
        entry = _KEY_SETS.get(id(names))
        if entry is None or entry[0] is not names:
            # Keyed by identity: callers pass the same tuple every time (a tracer's
            # fields); the tuple is kept in the entry so its id cannot be reused.
            entry = (names, frozenset(environ_key(name) for name in names))
            if len(_KEY_SETS) >= 64:
                _KEY_SETS.clear()
            _KEY_SETS[id(names)] = entry
        return not self._environ.keys().isdisjoint(entry[1])

    def get(self, name: str, default: Any = None) -> Any:
        key = _ENV_KEYS.get(name)
        if key is None:
            key = environ_key(name.lower())
        return self._environ.get(key, default)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith('HTTP_'):
                yield key[5:].lower().replace('_', '-')
            elif key in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
                yield key.lower().replace('_', '-')

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: Bound of an :class:`Exclusion`'s per-method cache (the method is client-controlled).
_EXCLUSION_METHODS = 64
_PLAIN_METHOD = re.compile('[A-Z]*').fullmatch


class Exclusion:
    """The exclusion rules, compiled for a test the middleware runs inline.

    PERF: the common rule shapes need no regular expression and no string built per
    request: per request method, the exact paths are one frozenset and the prefixes one
    tuple for ``str.startswith``, so a request costs two environ reads, one dict lookup,
    one set lookup and one ``startswith``, without a Python call. Only
    OpenTelemetry-style patterns (unanchored ``re.search`` in the path) need a call.

    A rule without a method matches every method: an exact rule any method string, a
    prefix rule a method of capital letters only (what the former single regular
    expression, ``[A-Z]* /path.*``, matched).

    Args:
        rules: the ``[METHOD ]/path[*]`` rules.
        patterns: the regular expressions searched in the path.
        everything: exclude every request (a disabled middleware).
    """

    __slots__ = ('by_method', 'search', '_rules', '_everything')

    def __init__(self, rules: tuple[ExcludeRule, ...], patterns: tuple[str, ...] = (),
                 everything: bool = False) -> None:
        self._rules = tuple(rules)
        self._everything = everything
        #: method -> (exact paths, path prefixes or None); filled as methods are seen.
        self.by_method: dict[str, tuple[frozenset[str], Optional[tuple[str, ...]]]] = {}
        #: ``search(path)`` of the patterns, or None.
        self.search = (re.compile('|'.join(f'(?:{p})' for p in patterns)).search
                       if patterns else None)

    def entry(self, method: str) -> tuple[frozenset[str], Optional[tuple[str, ...]]]:
        """The exact paths and the prefixes (None: no prefix rule) that apply to
        ``method`` (cached).

        PERF: None, not an empty tuple, when no prefix rule applies (the usual
        ``GET /health`` exclusion): ``str.startswith`` costs ~750 instructions even with
        nothing to compare (it parses its arguments from a tuple), on every request the
        rules do not exclude.
        """
        rules = self._rules
        if self._everything:
            found: tuple[frozenset[str], Optional[tuple[str, ...]]] = (frozenset(), ('',))
        else:
            plain = _PLAIN_METHOD(method) is not None
            prefixes = tuple(rule.path for rule in rules
                             if rule.prefix and (rule.method == method
                                                 or (rule.method is None and plain)))
            found = (
                frozenset(rule.path for rule in rules
                          if not rule.prefix and rule.method in (None, method)),
                prefixes or None)
        if len(self.by_method) < _EXCLUSION_METHODS:
            self.by_method[method] = found
        return found

    def __call__(self, environ: Mapping[str, Any]) -> bool:
        """Whether the request is excluded (the middleware inlines this test)."""
        method = environ.get('REQUEST_METHOD', '')
        paths, prefixes = self.by_method.get(method) or self.entry(method)
        path = environ.get('PATH_INFO') or '/'
        return (path in paths or (prefixes is not None and path.startswith(prefixes))
                or (self.search is not None and self.search(path) is not None))


def build_exclusion(rules: tuple[ExcludeRule, ...], patterns: tuple[str, ...]
                    ) -> Optional[Exclusion]:
    """The compiled exclusion rules, or None when there are none."""
    if not rules and not patterns:
        return None
    return Exclusion(rules, patterns)


def build_excluder(rules: tuple[ExcludeRule, ...],
                   patterns: tuple[str, ...]) -> Optional[Callable[[Mapping[str, Any]], bool]]:
    """Compile the exclusion rules into one predicate over the environ (None: no rules).

    Kept for callers of the former API: the predicate is an :class:`Exclusion`.
    """
    return build_exclusion(rules, patterns)


def build_url_builder(redact: tuple[str, ...], record_query: bool
                      ) -> Callable[[Mapping[str, Any]], str]:
    """Return ``url(environ)`` building ``http.url`` with secret query values redacted."""
    secret = compile_names(redact)

    def url(environ: Mapping[str, Any]) -> str:
        host = environ.get('HTTP_HOST')
        scheme = environ.get('wsgi.url_scheme', 'http')
        if not host:
            host = environ.get('SERVER_NAME', '')
            port = environ.get('SERVER_PORT', '')
            if port and port != ('443' if scheme == 'https' else '80'):
                host = f'{host}:{port}'
        path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
        query = environ.get('QUERY_STRING')
        if not query or not record_query:
            return f'{scheme}://{host}{path}'
        return f'{scheme}://{host}{path}?{redact_query(query, secret)}'

    return url


_DEFAULT_PORTS = {'http': 80, 'https': 443}
#: ``SERVER_PROTOCOL`` -> ``network.protocol.version`` (the conventions write 2 and 3).
_PROTOCOL_VERSIONS = {'HTTP/1.1': '1.1', 'HTTP/1.0': '1.0', 'HTTP/2': '2', 'HTTP/2.0': '2',
                      'HTTP/3': '3', 'HTTP/3.0': '3', 'HTTP/0.9': '0.9'}
#: A forwarded client address longer than this is not an address (IPv6 with a zone fits).
_MAX_ADDRESS = 64
#: build_stable_values keeps at most this many Host values, each at most this long
#: (the client sends them: the cache is bounded in entries and in bytes).
_HOST_CACHE_SIZE = 256
_MAX_CACHED_HOST = 256


#: The stable request tags, in the order :func:`build_stable_values` gives their values.
STABLE_REQUEST_KEYS = (REQUEST_METHOD, METHOD_ORIGINAL, URL_SCHEME, URL_PATH, URL_QUERY,
                       SERVER_ADDRESS, SERVER_PORT, NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT,
                       CLIENT_ADDRESS, NETWORK_PROTOCOL_VERSION, USER_AGENT)
StableValues = tuple[str, Optional[str], str, str, Optional[str], Optional[str],
                     Optional[int], Optional[str], Optional[int], Optional[str],
                     Optional[str], Optional[str]]


def build_stable_values(redact: tuple[str, ...], record_query: bool,
                        known_methods: Iterable[str] = KNOWN_METHODS,
                        limit: int = 1 << 62,
                        ) -> Callable[[Mapping[str, Any], str], StableValues]:
    """Return ``values(environ, method)``: a server span's request tags under
    OpenTelemetry's stable HTTP semantic conventions (see ``_semconv.py``), as the
    values of :data:`STABLE_REQUEST_KEYS` in that order (``None``: no such tag).

    ``url.query`` is redacted as ``http.url`` is; ``server.address``/``server.port`` come
    from the ``Host`` header (else ``SERVER_NAME``/``SERVER_PORT``), ``client.address``
    from the first ``X-Forwarded-For`` entry (else the socket peer), as the conventions
    describe. A method outside ``known_methods`` (default
    :data:`~._semconv.KNOWN_METHODS`) is written ``_OTHER`` with
    ``http.request.method_original``, which bounds the tag's cardinality. The values a
    client sends (path, query, host, user agent, an unknown method) are cut to
    ``limit`` characters, the span limits' attribute value length: they are written
    past ``Span.set_tag``.
    """
    secret = compile_names(redact)
    known = frozenset(known_methods)
    # PERF: (Host header, scheme) -> (server.address, server.port): a service sees few
    # Host values, so the split and the port's parse are made once per value (bounded,
    # see _HOST_CACHE_SIZE: the client sends the header).
    servers: dict[tuple[str, str], tuple[Optional[str], Optional[int]]] = {}

    def values(environ: Mapping[str, Any], method: str) -> StableValues:
        scheme = environ.get('wsgi.url_scheme') or 'http'
        query = environ.get('QUERY_STRING')
        host = environ.get('HTTP_HOST')
        address: Optional[str]
        port: Optional[str]
        if host:
            server = servers.get((host, scheme))
            if server is None:
                address, port = _split_host(host)
                server = _server(address, port, scheme, limit)
                if len(host) <= _MAX_CACHED_HOST:
                    if len(servers) >= _HOST_CACHE_SIZE:
                        servers.clear()
                    servers[(host, scheme)] = server
            address, server_port = server
        else:
            address, server_port = _server(environ.get('SERVER_NAME'),
                                           environ.get('SERVER_PORT'), scheme, limit)
        peer = environ.get('REMOTE_ADDR') or None
        peer_port = _port(environ.get('REMOTE_PORT')) if peer else None
        client = peer
        forwarded = environ.get('HTTP_X_FORWARDED_FOR')
        if forwarded:
            first = forwarded.partition(',')[0].strip()
            if first and len(first) <= _MAX_ADDRESS:
                client = first
        protocol = environ.get('SERVER_PROTOCOL')
        version = None
        if protocol:
            version = _PROTOCOL_VERSIONS.get(protocol)
            if version is None and protocol.startswith('HTTP/') and len(protocol) <= 16:
                version = protocol[5:]
        known_method = method in known
        agent = environ.get('HTTP_USER_AGENT')
        # PERF: a slice that keeps the whole str is the str itself (no copy).
        return (method if known_method else OTHER_METHOD,
                None if known_method else method[:limit], scheme[:limit],
                ((environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', ''))
                 or '/')[:limit],
                redact_query(query, secret)[:limit] if query and record_query else None,
                address, server_port, peer and peer[:limit], peer_port,
                client and client[:limit], version or None,
                agent[:limit] if agent else None)

    return values


def build_stable_tagger(redact: tuple[str, ...], record_query: bool,
                        known_methods: Iterable[str] = KNOWN_METHODS,
                        limit: int = 1 << 62,
                        ) -> Callable[[Mapping[str, Any], str, dict[str, Any]], None]:
    """Return ``tag(environ, method, tags)`` adding the values of
    :func:`build_stable_values` to a tag dict (spans other than this package's
    ``StableServerSpan``, which holds them as fields)."""
    values = build_stable_values(redact, record_query, known_methods, limit)

    def tag(environ: Mapping[str, Any], method: str, tags: dict[str, Any]) -> None:
        for key, value in zip(STABLE_REQUEST_KEYS, values(environ, method)):
            if value is not None:
                tags[key] = value

    return tag


def _server(address: Optional[str], port: Optional[str], scheme: str, limit: int
            ) -> tuple[Optional[str], Optional[int]]:
    """``(server.address, server.port)`` of a request's host and port text: the
    address cut to ``limit``, the port parsed, else the scheme's default (none without
    an address)."""
    if not address:
        return None, None
    return address[:limit], _port(port) if port else _DEFAULT_PORTS.get(scheme)


def _split_host(host: str) -> tuple[str, Optional[str]]:
    """``Host`` header -> (address, port text or None); ``[::1]:80`` -> ``('::1', '80')``."""
    if host.startswith('['):
        address, _, rest = host[1:].partition(']')
        return address, rest[1:] if rest.startswith(':') else None
    address, sep, port = host.rpartition(':')
    if not sep or ':' in address:  # no port, or a bare IPv6 address
        return host, None
    return address, port


def _port(text: Any) -> Optional[int]:
    try:
        number = int(text)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 65536 else None


def peer_tags(environ: Mapping[str, Any], tags: dict[str, Any]) -> None:
    """Add ``peer.ipv4``/``peer.ipv6`` and ``peer.port`` from the socket peer."""
    addr = environ.get('REMOTE_ADDR')
    if addr:
        tags[ot_tags.PEER_HOST_IPV6 if ':' in addr else ot_tags.PEER_HOST_IPV4] = addr
    port = environ.get('REMOTE_PORT')
    if port:
        try:
            tags[ot_tags.PEER_PORT] = int(port)
        except ValueError:
            pass


def set_tags(span: Any, tags: dict[str, Any]) -> None:
    """Set several tags: in one call when the span has ``set_tags`` (ours does), else one
    ``set_tag`` per tag (any OpenTracing span)."""
    bulk = getattr(span, 'set_tags', None)
    if bulk is not None:
        bulk(tags)
    else:
        for key, value in tags.items():
            span.set_tag(key, value)


def context_ids(context: Any) -> Optional[tuple[str, str]]:
    """The trace and span ids of any tracer's span context, as Zipkin and Jaeger show them.

    This package's contexts hold lower-case hex already; jaeger-client's hold ints; the
    OpenTelemetry shim's hold neither and give the OpenTelemetry context through
    ``unwrap()``. Ints are written with 16 hex digits, or 32 past 64 bits (a 64-bit id
    keeps its width, as in Zipkin's and Jaeger's UIs). None when the context has no ids.
    """
    trace_id = getattr(context, 'trace_id', None)
    span_id = getattr(context, 'span_id', None)
    if trace_id is None:
        unwrap = getattr(context, 'unwrap', None)  # opentelemetry-opentracing-shim
        if callable(unwrap):
            inner = unwrap()
            trace_id = getattr(inner, 'trace_id', None)
            span_id = getattr(inner, 'span_id', None)
    if not trace_id or not span_id:  # None, or OpenTelemetry's invalid id 0
        return None
    return _hex_id(trace_id), _hex_id(span_id)


def _hex_id(value: Any) -> str:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, int):
        return format(value, '016x' if value < 1 << 64 else '032x')
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def record_exception(span: Any, exc: BaseException, with_stack: bool = True,
                     mark_error: bool = True,
                     secret: Optional[Secret] = DEFAULT_SECRET) -> None:
    """Record an exception on a span the OpenTracing way (``error`` tag + ``error`` log).

    ``mark_error=False`` logs the exception without the ``error`` tag, for an exception
    the app handled itself (the status code then decides whether the span failed).
    URLs in the message and stack get the same redaction as ``http.url`` (``secret``,
    from :func:`~falcon_tracing_wsgi._redact.compile_names`): an exception text often
    quotes the URL it failed on.
    """
    if mark_error:
        span.set_tag(ot_tags.ERROR, True)
    fields = {ot_logs.EVENT: ot_tags.ERROR, 'error.kind': type(exc).__name__,
              ot_logs.MESSAGE: redact_text(str(exc), secret)}
    if with_stack and exc.__traceback__ is not None:
        fields[ot_logs.STACK] = redact_text(''.join(traceback.format_exception(
            type(exc), exc, exc.__traceback__)), secret)
    span.log_kv(fields)


def finish_unclosed() -> None:
    """Finish the spans of responses collected unclosed (tagged ``wsgi.unclosed``).

    Called by the middleware before it registers a request and by the worker-abort and
    exit hooks, never from a finalizer (see ``TracedResponse.__del__``).
    """
    while UNCLOSED:
        try:
            response, collected = UNCLOSED.popleft()
        except IndexError:  # another thread took the last one
            return
        try:
            if response._claim():
                response.span.set_tag(TAG_UNCLOSED, True)
                response._middleware.complete(response, collected)
        except Exception:
            _log.warning('tracing failed to finish an unclosed response', exc_info=True)


class _ClosingFile:
    """A file proxy whose ``close()`` also finishes the span (see module docstring)."""

    __slots__ = ('_file', '_response', '_start', '_end', '_read')

    def __init__(self, file: Any, response: TracedResponse) -> None:
        self._file = file
        self._response = response
        self._read = False
        #: The position the sender last moved the file to (see _account_sendfile).
        self._end: Optional[int] = None
        try:
            self._start: Optional[int] = file.tell()
        except Exception:  # not seekable: sendfile is not possible either
            self._start = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def seek(self, *args: Any) -> Any:
        position = self._file.seek(*args)
        self._end = position
        return position

    def read(self, *args: Any) -> Any:
        self._read = True
        data = self._file.read(*args)
        self._response.sent_bytes += len(data)
        if not data:
            self._response.exhausted = True
        return data

    def close(self) -> None:
        try:
            if not self._read:
                self._account_sendfile()
        except Exception:
            _log.debug('could not tell how much of the file was sent', exc_info=True)
        try:
            close = getattr(self._file, 'close', None)
            if close is not None:
                close()
        finally:
            self._response.finish()

    def _account_sendfile(self) -> None:
        """Bytes sent and exhaustion when the server never called ``read()``.

        NOTE: ``socket.sendfile()`` (gunicorn's path) seeks the file to just after the
        last byte it sent when it returns, also when the client went away mid-file (its
        documented way of telling how much was sent), through this proxy's ``seek()``;
        gunicorn then moves the descriptor back with ``os.lseek``, which the proxy does
        not see, so the position *seeked to* tells what was sent, not the file's current
        position. The server sends the rest of the file, or ``Content-Length`` bytes when
        the app set it. A response without a body (``HEAD``, 204, 304) is complete
        without sending anything, and a sender that neither read nor seeked (nothing is
        known) is taken at its word, as before.
        """
        response = self._response
        start, end = self._start, self._end
        if (start is None or end is None or response.status_code in (204, 304)
                or response.environ.get('REQUEST_METHOD') == 'HEAD'):
            response.exhausted = True
            return
        sent = end - start
        expected = _content_length(response.headers)
        if expected is None:
            expected = os.fstat(self._file.fileno()).st_size - start
        response.sent_bytes += sent
        response.exhausted = sent >= expected


#: status line -> its integer code (0: none), for start_response; bounded, since the
#: app could make up status lines.
_STATUS_CODES: dict[str, int] = {}
_STATUS_CODES_SIZE = 256


def _status_code(status: Any) -> int:
    """The integer code of a status line (0 when it has none), cached for a str."""
    try:
        code = int(status[:3])
    except (TypeError, ValueError):
        code = 0
    if type(status) is str and len(_STATUS_CODES) < _STATUS_CODES_SIZE:
        _STATUS_CODES[status] = code
    return code


def _content_length(headers: Optional[list[tuple[str, str]]]) -> Optional[int]:
    for name, value in headers or ():
        if name.lower() == 'content-length':
            try:
                return int(value)
            except ValueError:
                return None
    return None


class TracedResponse:
    """The per-request state: wraps ``start_response`` and the response iterable.

    One instance per traced request; it is the iterable handed back to the server, and
    the ``write`` callable its ``start_response`` returns to the app (``__call__``).
    ``recording`` is false for a span that records nothing (our tracer's unsampled
    spans): then only the response trace header and the span's activation matter.
    """

    __slots__ = ('span', 'environ', 'recording', 'scope_manager', '_reset', '_middleware',
                 '_start_response', '_iterable', '_iterator', '_activate', '_plain',
                 '_write', 'status_code', 'headers', 'sent_bytes', 'exhausted',
                 '_finished', 'error_type', '__weakref__')

    def __init__(self, middleware: Any, span: Any, environ: dict[str, Any],
                 start_response: Callable[..., Any], scope_manager: Any,
                 reset: Callable[[Any], None], recording: bool = True) -> None:
        # NOTE: the middleware fills the same fields without this frame for every traced
        # request (PERF, see TracingMiddleware.__call__): keep the two in step.
        self.span = span
        self.environ = environ
        self.recording = recording
        self._middleware = middleware
        self._start_response = start_response
        self.scope_manager = scope_manager
        self._reset = reset
        self._iterable: Any = None
        self._iterator: Optional[Iterator[bytes]] = None
        self._activate = True
        self._plain = False
        self.status_code = 0
        #: The response headers the server accepted (None until then).
        self.headers: Optional[list[tuple[str, str]]] = None
        self.sent_bytes = 0
        self.exhausted = False
        self._finished = False
        #: the class of the exception the request failed with (``error.type``), if any
        self.error_type: Optional[str] = None

    # -- start_response -----------------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], Any]:
        """The ``start_response`` the app sees: delegates, then records what was accepted.

        The server's ``start_response`` is called first: a call it rejects (a second one
        without ``exc_info``, or ``exc_info`` once the headers were sent, which it
        re-raises) changes nothing the client gets, so it changes nothing on the span
        either, and the exception it raises is recorded once, where it ends the app.
        """
        middleware = self._middleware
        if middleware._trace_header is not None:
            try:
                middleware.add_trace_header(self, headers)
            except Exception:
                _log.warning('tracing failed to add the trace header; the response goes on',
                             exc_info=True)
        self._write = self._start_response(status, headers, exc_info)
        try:
            # The integer code of the status line; 0 when it has none.
            # PERF: apps answer with a few status lines: each one is parsed once.
            code = _STATUS_CODES.get(status) if type(status) is str else None
            if code is None:
                code = _status_code(status)
            self.status_code = code
            self.headers = headers
            if exc_info is not None and exc_info[1] is not None:
                self._record_failure(exc_info[1])
            # PERF: most deployments record nothing here (no captured response headers,
            # no hook): skip the call.
            if self.recording and middleware.watch_response:
                middleware.on_start_response(self, status, headers, code)
        except Exception:
            _log.warning('tracing failed in start_response; the response goes on',
                         exc_info=True)
        # PERF: the response itself is the write callable (see __call__): no bound method
        # or closure made per request for a callable apps rarely use (Falcon never does).
        return self

    def __call__(self, data: bytes) -> Any:
        """The ``write`` callable ``start_response`` returns (PEP 3333): counts the bytes,
        then hands them to the server's."""
        self.sent_bytes += len(data)
        return self._write(data)

    # -- the iterable -------------------------------------------------------------------
    def wrap(self, result: Any) -> Any:
        """Return what the server should get for the app's ``result``."""
        self._iterable = result
        file_wrapper = self.environ.get('wsgi.file_wrapper')
        if (file_wrapper is not None and isinstance(file_wrapper, type)
                and type(result) is file_wrapper and hasattr(result, 'filelike')):
            try:
                return file_wrapper(_ClosingFile(result.filelike, self),
                                    getattr(result, 'blksize', 8192))
            except Exception:
                _log.warning('could not re-wrap wsgi.file_wrapper; tracing it as a plain '
                             'iterable (no sendfile)', exc_info=True)
        # PERF: a list or tuple body runs no app code while it is iterated, and an exact
        # list or tuple is iterated by its own C iterator (see __iter__).
        self._plain = type(result) is list or type(result) is tuple
        self._activate = not (self._plain or isinstance(result, (list, tuple)))
        return self

    def __iter__(self) -> Iterator[bytes]:
        try:
            iterator: Iterator[bytes] = iter(self._iterable)
        except BaseException as exc:  # the app returned None, an int, ...: not iterable
            self._body_failed(exc)
            raise
        self._iterator = iterator
        if self._plain:
            # PERF: the server iterates the list's own iterator (no Python call per
            # chunk); finish() reads how far it got from its length hint.
            return iterator
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = iter(self._iterable)
        if self._plain:
            return next(iterator)  # counted by finish(), like the C iteration
        if not self._activate:
            try:
                chunk = next(iterator)
            except StopIteration:
                self.exhausted = True
                raise
            self.sent_bytes += len(chunk)
            return chunk
        scope = self.scope_manager.activate(self.span, False)
        try:
            chunk = next(iterator)
        except StopIteration:
            self.exhausted = True
            raise
        except BaseException as exc:
            self._body_failed(exc)
            raise
        finally:
            self._reset(scope)
        self.sent_bytes += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the app's iterable (inside the span), then finish the span; only once."""
        if self._finished:
            return
        try:
            close = getattr(self._iterable, 'close', None)
            if close is not None:
                scope = self.scope_manager.activate(self.span, False) \
                    if self._activate else None
                try:
                    close()
                except BaseException as exc:
                    self._record_failure(exc)
                    raise
                finally:
                    if scope is not None:
                        self._reset(scope)
        finally:
            # PERF: finish() and _claim() inlined (the usual end of every request: two
            # Python calls fewer); the same test and atomic pop as _claim().
            if not self._finished and (not self.recording
                                       or IN_FLIGHT.pop(id(self), None) is not None):
                self._finished = True
                self._middleware.complete(self)

    # -- outcome ------------------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """The app raised before returning an iterable: record it and finish."""
        if self._finished:  # e.g. the SystemExit of a worker whose spans were aborted
            return
        self._body_failed(exc)
        self.finish()

    def _body_failed(self, exc: BaseException) -> None:
        """Record an exception that ends the response, and the status the client gets.

        NOTE: a PEP 3333 server answers ``500`` to an app error raised before the
        headers were sent (gunicorn, waitress, wsgiref all do), whatever status the app
        passed to ``start_response``; headers go out with the first non-empty chunk. An
        interrupt (``SystemExit``, ``KeyboardInterrupt``) ends the process instead:
        the client gets no answer, so no status is recorded for it.
        """
        self._record_failure(exc)
        if not self.sent_bytes:
            if isinstance(exc, Exception):
                self.status_code = 500
                self.exhausted = True  # the server's error page is the whole response
            else:
                self.status_code = 0  # nothing will be sent (tagged aborted)
        # else: a body already started was cut (tagged aborted)

    def _record_failure(self, exc: BaseException) -> None:
        environ = self.environ
        if self._finished or environ.get(ENVIRON_EXCEPTION) is exc:
            return
        self.error_type = type(exc).__qualname__
        try:
            record_exception(self.span, exc, secret=self._middleware.redact_names)
            environ[ENVIRON_EXCEPTION] = exc
        except Exception:
            _log.warning('tracing failed to record an exception', exc_info=True)

    def _claim(self) -> bool:
        """Take the right to finish the span; False if it was taken already.

        A recorded response is in IN_FLIGHT until then, and ``dict.pop`` is atomic, so
        the request thread, a worker-abort hook on another thread and the garbage
        collector cannot both finish (and report) the same span.
        """
        if self._finished:
            return False
        if self.recording and IN_FLIGHT.pop(id(self), None) is None:
            return False
        self._finished = True
        return True

    def __del__(self) -> None:
        # The server dropped the response without closing it (PEP 3333 says it must;
        # some servers and test harnesses do not): the span is reported anyway, tagged
        # so, by the next request (finish_unclosed).
        # NOTE: not finished here: a finalizer runs wherever the garbage collector does,
        # for a response in a reference cycle maybe while this very thread holds the
        # reporter's lock. deque.append takes no lock; the response is kept (PEP 442
        # resurrection) until then, and __del__ is not called again.
        if self._finished or not self.recording:
            return  # PERF: the usual case, closed by the server
        try:
            UNCLOSED.append((self, _time()))
        except Exception:  # pragma: no cover - __del__ must never raise
            pass

    def finish(self) -> None:
        """Finish the span exactly once (tags that depend on the outcome go on here)."""
        if self._claim():
            self._middleware.complete(self)

    def abort(self, reason: str) -> bool:
        """Finish an unfinished span as failed because the process is going away."""
        if not self._claim():
            return False
        try:
            span = self.span
            span.set_tag(ot_tags.ERROR, True)
            span.set_tag(TAG_ABORT_REASON, reason)
            span.log_kv({ot_logs.EVENT: ot_tags.ERROR, 'error.kind': 'WorkerAbort',
                         ot_logs.MESSAGE: reason})
            self.error_type = 'WorkerAbort'
            # NOTE: what happened, not a status the span cannot know: for a request
            # whose headers were not sent yet, the hook runs before gunicorn decides
            # (recent versions then write a 500 page themselves; older ones send
            # nothing), so no status is recorded.
            started = self.sent_bytes or (self._plain and self._iterator is not None)
            if not started:
                self.status_code = 0
            self.exhausted = False
        except Exception:
            _log.warning('tracing failed to tag an aborted span', exc_info=True)
        self._middleware.complete(self)
        return True

    @property
    def finished(self) -> bool:
        """Whether the span has been finished."""
        return self._finished
