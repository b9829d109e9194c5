"""Spans: a sampled :class:`Span` that records, and an :class:`UnsampledSpan` that does not.

Design:

* The tracer picks the class when the span starts, from the sampling decision, so no
  method ever asks "am I sampled?". An unsampled span (the common case under a low
  sampling rate) keeps only what must propagate, its context and baggage: ``set_tag``
  and ``log_kv`` are empty methods, ``finish`` does nothing and it is never reported.
* :class:`Span` is what reporters and encoders read after :meth:`Span.finish`:
  ``context``, ``operation_name``, ``start_time`` (epoch seconds), ``duration`` (seconds,
  ``None`` until finished), ``tags`` (a dict) and ``logs`` (a list of
  ``(timestamp, fields)`` or ``None``).
* ``duration`` comes from :func:`time.perf_counter` when the tracer chose both ends of
  the span, so a wall-clock step (NTP) during a request cannot make it wrong or negative;
  with an explicit ``start_time`` or ``finish_time`` it is the difference of the two wall
  times, never below zero.
* :meth:`Span.finish` takes effect once: the first call records the duration and hands
  the span to the reporter; later calls (a ``with`` block around a span the code also
  finishes by hand) are ignored.
* Baggage is copy-on-write: :meth:`Span.set_baggage_item` replaces the span's context with
  a new one, so a context already handed to a child or injected is never changed.
* A span is **bounded while it records** (:mod:`~falcon_tracing_wsgi.tracer.limits`):
  the tracer decides its :class:`~.limits.SpanLimits` once, and ``set_tag`` compares a
  length and a count before it stores; ``log_kv`` makes a bounded copy of the fields.
  What is dropped is counted on the span (:attr:`Span.dropped_attributes_count`,
  :attr:`Span.dropped_events_count`, OTLP's names) and the encoders report it.
  Baggage follows the W3C limits (180 items, 4096 bytes per item, 8192 in all), beyond
  which it could not be propagated anyway.
* A span reads its tracer through the :class:`SpanOwner` protocol (the limits and
  ``_report``), so this module does not import ``tracer.py``, which imports it.
* ``span.context`` is a property with a C getter (``operator.attrgetter``) instead of
  the base class's Python one: the middleware, the Falcon component and the encoders
  read it on every request.
* Both classes use ``__slots__`` for their fields. ``opentracing.Span`` has no slots, so
  instances still get a ``__dict__`` when something assigns a new attribute (``mock``
  patching ``finish`` in the OpenTracing conformance suite does); normal use never creates
  it.
"""

from __future__ import annotations

import logging
import time
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Protocol

import opentracing
from opentracing import tags as ot_tags

from .. import _semconv as semconv
from .._keys import TAG_ABORTED, TAG_RESPONSE_SIZE, TAG_ROUTE
from ..propagation.baggage import MAX_BYTES, MAX_MEMBER_BYTES, MAX_MEMBERS
from .context import SpanContext
from .limits import _INT_BOUND, bounded_event, bounded_value, is_error_event

__all__ = ['Span', 'ServerSpan', 'StableServerSpan', 'UnsampledSpan', 'SpanOwner',
           'SERVER_FIELD_TAGS', 'STABLE_FIELD_TAGS', 'add_outcome_tags']

_log = logging.getLogger(__name__)

_time = time.time
_perf_counter = time.perf_counter
_NO_TAGS: Mapping[str, Any] = MappingProxyType({})
_INT_LOW = -_INT_BOUND
_INT_HIGH = _INT_BOUND
_SPAN_KIND = ot_tags.SPAN_KIND
_SERVER = ot_tags.SPAN_KIND_RPC_SERVER
_COMPONENT = ot_tags.COMPONENT
_HTTP_METHOD = ot_tags.HTTP_METHOD
_HTTP_URL = ot_tags.HTTP_URL
_HTTP_STATUS_CODE = ot_tags.HTTP_STATUS_CODE
_ERROR = ot_tags.ERROR
_PEER_IPV4 = ot_tags.PEER_HOST_IPV4
_PEER_IPV6 = ot_tags.PEER_HOST_IPV6
_PEER_PORT = ot_tags.PEER_PORT


class SpanOwner(Protocol):
    """What a span reads from the tracer that started it (the tracer's limits, decided
    once, and its reporter's ``report``).

    NOTE: a protocol here rather than an import of ``tracer.py``, which imports this
    module: no import circle, not even one for the type checker.
    """

    @property
    def _value_length(self) -> int: ...
    @property
    def _attribute_count(self) -> int: ...
    @property
    def _event_count(self) -> int: ...
    @property
    def _event_attribute_count(self) -> int: ...
    @property
    def _report(self) -> Callable[[Any], None]: ...


class Span(opentracing.Span):
    """A sampled span: records tags and logs and is reported once when finished.

    Spans are created by :meth:`Tracer.start_span
    <falcon_tracing_wsgi.tracer.tracer.Tracer.start_span>`, not directly.

    Attributes:
        operation_name: the span's name.
        start_time: when the span started, in epoch seconds.
        duration: seconds from start to finish; ``None`` until :meth:`finish`.
        tags: the tags set so far.
        logs: ``(timestamp, fields)`` pairs, or ``None`` when nothing was logged.
        references: the references to other spans that are not the parent (see the
            module docstring), or ``None`` (nearly every span).
        dropped_attributes_count: tags not recorded because the span already had
            ``attribute_count`` of them.
        dropped_events_count: log records not kept because the span already had
            ``event_count`` of them.
    """

    __slots__ = ('_tracer', '_context', 'operation_name', 'start_time', 'duration', '_tags',
                 'logs', '_perf_start', 'references', 'dropped_attributes_count',
                 'dropped_events_count')

    # PERF: the base class's ``context`` property runs a Python function; this one's
    # getter is C (read on every request by the middleware, the Falcon component and
    # the encoders).
    context = property(attrgetter('_context'),
                       doc='The span context (see opentracing.Span.context).')
    # NOTE: a property over a slot rather than the slot itself, so that ServerSpan can
    # present its standard fields as tags; the getter is C, as for ``context``.
    tags = property(attrgetter('_tags'), lambda self, tags: setattr(self, '_tags', tags),
                    doc='The tags set so far (a dict).')

    def __init__(self, tracer: SpanOwner, context: SpanContext, operation_name: str,
                 start_time: Optional[float], tags: Optional[dict[str, Any]]) -> None:
        # PERF: the base initialiser is skipped; it only sets _tracer and _context.
        self._tracer = tracer
        self._context = context
        self.operation_name = operation_name
        if start_time is None:
            self.start_time = _time()
            self._perf_start: Optional[float] = _perf_counter()
        else:
            self.start_time = start_time
            self._perf_start = None
        self.duration: Optional[float] = None
        self._tags: dict[str, Any] = {} if tags is None else tags
        self.logs: Optional[list[tuple[float, dict[str, Any]]]] = None
        self.references: Optional[tuple[opentracing.Reference, ...]] = None
        # PERF: plain slots, not properties: every encoder reads both on every span.
        self.dropped_attributes_count = 0
        self.dropped_events_count = 0

    def set_operation_name(self, operation_name: str) -> Span:
        """Rename the span (a Falcon component renames it to the route template)."""
        limit = self._tracer._value_length
        if type(operation_name) is not str or len(operation_name) > limit:
            operation_name = bounded_value(operation_name, limit)
        self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> Span:
        """Set a tag; the last value set for a key wins.

        Within the tracer's span limits: a value or key longer than ``value_length`` is
        cut, a value without a fixed size becomes text, and a new key beyond
        ``attribute_count`` tags is dropped and counted.
        """
        tracer = self._tracer
        limit = tracer._value_length
        # PERF: the usual str value costs a type test and a length compare; an int a
        # range compare (a Python int has no size limit).
        kind = type(value)
        if kind is str:
            if len(value) > limit:
                value = value[:limit]
        elif kind is int:
            if not _INT_LOW < value < _INT_HIGH:
                value = bounded_value(value, limit)
        elif kind is not bool and kind is not float and value is not None:
            value = bounded_value(value, limit)
        if type(key) is not str or len(key) > limit:
            key = bounded_value(key, limit)
        tags = self._tags
        if len(tags) < tracer._attribute_count or key in tags:
            tags[key] = value
        else:
            self.dropped_attributes_count += 1
        return self

    def set_tags(self, tags: Mapping[str, Any]) -> Span:
        """Set several tags at once, within the span limits (see :meth:`set_tag`).

        Not part of the OpenTracing API: the middleware uses it when a span has it.
        """
        # PERF: set_tag's checks inlined: a method call per tag would cost more than the
        # checks (the Falcon component sets its tags this way on every request).
        own = self._tags
        tracer = self._tracer
        limit = tracer._value_length
        count = tracer._attribute_count
        for key, value in tags.items():
            kind = type(value)
            if kind is str:
                if len(value) > limit:
                    value = value[:limit]
            elif kind is int:
                if not _INT_LOW < value < _INT_HIGH:
                    value = bounded_value(value, limit)
            elif kind is not bool and kind is not float and value is not None:
                value = bounded_value(value, limit)
            if type(key) is not str or len(key) > limit:
                key = bounded_value(key, limit)
            if len(own) < count or key in own:
                own[key] = value
            else:
                self.dropped_attributes_count += 1
        return self

    def log_kv(self, key_values: dict[str, Any], timestamp: Optional[float] = None) -> Span:
        """Add a log record (a bounded copy of ``key_values``) at ``timestamp`` or now.

        Beyond ``event_count`` records the record is dropped and counted; an error record
        takes the place of the newest one instead (see
        :mod:`~falcon_tracing_wsgi.tracer.limits`).
        """
        tracer = self._tracer
        fields = bounded_event(key_values, tracer._event_attribute_count,
                               tracer._value_length)
        record = (_time() if timestamp is None else timestamp, fields)
        logs = self.logs
        if logs is None:
            if tracer._event_count > 0:
                self.logs = [record]
            else:
                self.dropped_events_count += 1
        elif len(logs) < tracer._event_count:
            logs.append(record)
        else:
            self.dropped_events_count += 1
            if is_error_event(fields):
                logs[-1] = record
        return self

    def set_baggage_item(self, key: str, value: Optional[str]) -> Span:
        """Set (or with ``None`` remove) a baggage item for this span's future children.

        An item that W3C baggage could not carry (more than 180 items, more than 4096
        characters of key and value, or 8192 in all) is not set; the span keeps its
        baggage as it was.
        """
        context = _with_baggage_item(self._context, key, value)
        if context is not None:
            self._context = context
        return self

    def get_baggage_item(self, key: str) -> Optional[str]:
        """Return a baggage item, or ``None``."""
        return self._context.baggage.get(key)

    def finish(self, finish_time: Optional[float] = None) -> None:
        """Record the duration and report the span; only the first call has an effect.

        Args:
            finish_time: an explicit end time in epoch seconds (``time.time()``).
        """
        if self.duration is not None:
            return
        if finish_time is None and self._perf_start is not None:
            self.duration = _perf_counter() - self._perf_start
        else:
            end = _time() if finish_time is None else finish_time
            duration = end - self.start_time
            self.duration = duration if duration > 0.0 else 0.0
        try:
            self._tracer._report(self)
        except Exception:
            # The Reporter contract says report() never raises; a third-party one that
            # does must not turn a finished request into an error.
            _log.warning('the reporter failed to take a span', exc_info=True)

    def __exit__(self, exc_type: object, exc_val: Optional[BaseException],
                 exc_tb: object) -> None:
        # PERF: the base __exit__ always calls _on_error; skip it when nothing raised.
        # It tags error=True and logs event/message/error.object/error.kind/stack.
        if exc_val is not None:
            opentracing.Span._on_error(  # type: ignore[attr-defined]
                self, exc_type, exc_val, exc_tb)
        self.finish()

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` has been called."""
        return self.duration is not None

    def __repr__(self) -> str:
        return (f'<Span {self.operation_name!r} trace_id={self._context.trace_id} '
                f'span_id={self._context.span_id} parent_id={self._context.parent_id} '
                f'duration={self.duration!r}>')


def add_outcome_tags(tags: dict[str, Any], status_key: str, code: Any, size: Any,
                     aborted: bool, route: Any) -> None:
    """Add a server span's outcome tags: the status under ``status_key`` (and ``error``
    for a 5xx), the response size, ``http.aborted`` and the route; a zero, false or
    empty value is no tag. (The wrapper's tag dicts and the field spans' ``tags``.)"""
    if code:
        tags[status_key] = code
        if code >= 500:
            tags[_ERROR] = True
    if size:
        tags[TAG_RESPONSE_SIZE] = size
    if aborted:
        tags[TAG_ABORTED] = True
    if route:
        tags[TAG_ROUTE] = route


class ServerSpan(Span):
    """The server span of one WSGI request, whose standard HTTP tags are fields.

    The WSGI wrapper starts one per sampled request with this package's tracer and
    OpenTracing's tag names (the default): it fills the request's fields when the span
    starts (``component``, ``method``, ``url``, ``peer_address``, ``peer_port``), the
    framework integration sets ``route_tags`` once the route is known, and the wrapper
    fills the outcome's when the request ends (``status_code``, ``response_size``,
    ``aborted``, ``route``). Tags set through the OpenTracing API (``set_tag``,
    ``set_tags``, also by the app on ``req.context.span``) go to the span's own dict.

    Why: the same tags written into a dict at request time and read back key by key by
    the encoder cost most of a traced request; as fields, the Zipkin encoder writes them
    with one template (see ``export/zipkin.py``). Nothing else changes for anyone who
    reads the span: :attr:`tags` gives every tag, the fields under their tag names
    (``span.kind``, ``component``, ``http.method``, ``http.url``, ``peer.ipv4`` or
    ``peer.ipv6``, ``peer.port``, ``http.status_code``, ``error`` for a 5xx,
    ``http.response_size``, ``http.aborted``, ``http.route`` and the route's tags),
    merged with the span's own, in a new dict at each read: reading never changes the
    span (encoders of several formats may read one span, and a reader on another thread
    must not race the wrapper). Assigning ``tags`` replaces them all: the span is then
    a plain :class:`Span` (``merged`` is true) and the wrapper writes the outcome into
    that dict.

    Precedence, as when every tag went into one dict in the order it was set: a tag set
    through the API wins over a request field of the same name (it was set later), an
    outcome field wins over the API's (it is set when the request ends), and a route tag
    never replaces a tag of the same name set through the API.
    The span limits' ``attribute_count`` bounds the tags set through the API; the
    fields are the wrapper's own, as its tags were before.

    Only the WSGI wrapper makes one, always from the tracer's id generator or
    ``extract()``, so its ids are valid by the tracer's guarantee (see
    :mod:`~falcon_tracing_wsgi.tracer.context`) and the Zipkin encoder does not check
    them again.
    """

    __slots__ = ('component', 'method', 'url', 'peer_address', 'peer_port', 'status_code',
                 'response_size', 'aborted', 'route', 'route_tags', 'merged')

    component: str
    method: str
    url: str
    #: ``REMOTE_ADDR`` (``None`` when empty): ``peer.ipv6`` if it has a ``:``.
    peer_address: Optional[str]
    peer_port: Optional[int]
    #: 0 while unknown (no tag).
    status_code: int
    response_size: int
    aborted: bool
    route: Optional[str]
    #: Tags a framework adds once the route is known (Falcon's resource and responder).
    route_tags: Optional[Mapping[str, Any]]
    #: Whether ``tags`` was assigned (then the fields are unused and ``_tags`` is all).
    merged: bool

    @property
    def tags(self) -> dict[str, Any]:
        """Every tag: the fields under their tag names and the tags set through the API
        (a new dict; see the class docstring)."""
        if self.merged:
            return self._tags
        own = self._tags
        tags: dict[str, Any] = {_SPAN_KIND: _SERVER, _COMPONENT: self.component,
                                _HTTP_METHOD: self.method, _HTTP_URL: self.url}
        address = self.peer_address
        if address:
            tags[_PEER_IPV6 if ':' in address else _PEER_IPV4] = address
        if self.peer_port is not None:
            tags[_PEER_PORT] = self.peer_port
        tags.update(own)
        add_outcome_tags(tags, _HTTP_STATUS_CODE, self.status_code, self.response_size,
                         self.aborted, self.route)
        route_tags = self.route_tags
        if route_tags:
            limit = self._tracer._value_length  # as set_tag would cut them
            for key, value in route_tags.items():
                if key not in own:
                    tags[key] = value[:limit] if type(value) is str else value
        return tags

    @tags.setter
    def tags(self, tags: dict[str, Any]) -> None:
        self._tags = tags
        self.merged = True


#: The tag names ServerSpan's fields stand for: a tag of one of these names set through
#: the API makes an encoder take the merged dict (see ServerSpan).
SERVER_FIELD_TAGS = frozenset((
    _SPAN_KIND, _COMPONENT, _HTTP_METHOD, _HTTP_URL, _PEER_IPV4, _PEER_IPV6, _PEER_PORT,
    _HTTP_STATUS_CODE, _ERROR, TAG_RESPONSE_SIZE, TAG_ABORTED, TAG_ROUTE,
    ot_tags.PEER_SERVICE))


# PERF: module globals, not semconv.NAME lookups, in StableServerSpan.tags.
_METHOD_ORIGINAL = semconv.METHOD_ORIGINAL
_URL_SCHEME = semconv.URL_SCHEME
_URL_PATH = semconv.URL_PATH
_URL_QUERY = semconv.URL_QUERY
_SERVER_ADDRESS = semconv.SERVER_ADDRESS
_SERVER_PORT = semconv.SERVER_PORT
_NETWORK_PEER_ADDRESS = semconv.NETWORK_PEER_ADDRESS
_NETWORK_PEER_PORT = semconv.NETWORK_PEER_PORT
_CLIENT_ADDRESS = semconv.CLIENT_ADDRESS
_NETWORK_PROTOCOL_VERSION = semconv.NETWORK_PROTOCOL_VERSION
_USER_AGENT = semconv.USER_AGENT
_REQUEST_METHOD = semconv.REQUEST_METHOD
_RESPONSE_STATUS_CODE = semconv.RESPONSE_STATUS_CODE
_ERROR_TYPE = semconv.ERROR_TYPE


class StableServerSpan(Span):
    """The server span of one WSGI request under OpenTelemetry's stable HTTP names.

    What :class:`ServerSpan` is for OpenTracing's names: the wrapper starts one per
    sampled request with this package's tracer when the names are ``stable`` (the
    default for the OTLP reporter), fills the request's fields when the span starts
    and the outcome's when the request ends, and :attr:`tags` gives every tag in the
    order the wrapper used to write them into one dict: ``span.kind``, ``component``,
    ``http.request.method`` (``_OTHER`` and ``http.request.method_original`` for a
    method outside the known list), ``url.scheme``, ``url.path``, ``url.query``,
    ``server.address``, ``server.port``, ``network.peer.address``,
    ``network.peer.port``, ``client.address``, ``network.protocol.version``,
    ``user_agent.original``; the tags set through the API (captured request headers
    first); then ``http.response.status_code``, ``error`` for a 5xx,
    ``http.response_size``, ``http.aborted``, ``http.route``, the route's tags (a name
    already there is kept) and ``error.type``. A field that is ``None`` (or a zero
    status or size, a false ``aborted``) is no tag. Assigning ``tags`` replaces them
    all, as for :class:`ServerSpan`.

    Why: the OTLP encoder writes these fields with bytes shared per route instead of
    mapping a seventeen-tag dict tag by tag (see ``export/otlp.py``).
    """

    __slots__ = ('component', 'method', 'method_original', 'scheme', 'path', 'query',
                 'server_address', 'server_port', 'peer_address', 'peer_port',
                 'client_address', 'protocol_version', 'user_agent', 'status_code',
                 'response_size', 'aborted', 'route', 'route_tags', 'error_type', 'merged')

    component: str
    #: ``http.request.method``: the method, or ``_OTHER`` (then ``method_original``).
    method: str
    method_original: Optional[str]
    scheme: str
    path: str
    query: Optional[str]
    server_address: Optional[str]
    server_port: Optional[int]
    peer_address: Optional[str]
    peer_port: Optional[int]
    client_address: Optional[str]
    protocol_version: Optional[str]
    user_agent: Optional[str]
    #: 0 while unknown (no tag).
    status_code: int
    response_size: int
    aborted: bool
    route: Optional[str]
    route_tags: Optional[Mapping[str, Any]]
    error_type: Optional[str]
    merged: bool

    @property
    def tags(self) -> dict[str, Any]:
        """Every tag, in the wrapper's order (a new dict; see the class docstring)."""
        if self.merged:
            return self._tags
        tags: dict[str, Any] = {_SPAN_KIND: _SERVER, _COMPONENT: self.component,
                                _REQUEST_METHOD: self.method}
        # PERF: straight-line (the encoders without a fields path read this per span);
        # a loop over (name, value) pairs cost three times as much.
        if self.method_original is not None:
            tags[_METHOD_ORIGINAL] = self.method_original
        tags[_URL_SCHEME] = self.scheme
        tags[_URL_PATH] = self.path
        if self.query is not None:
            tags[_URL_QUERY] = self.query
        if self.server_address is not None:
            tags[_SERVER_ADDRESS] = self.server_address
        if self.server_port is not None:
            tags[_SERVER_PORT] = self.server_port
        if self.peer_address is not None:
            tags[_NETWORK_PEER_ADDRESS] = self.peer_address
        if self.peer_port is not None:
            tags[_NETWORK_PEER_PORT] = self.peer_port
        if self.client_address is not None:
            tags[_CLIENT_ADDRESS] = self.client_address
        if self.protocol_version is not None:
            tags[_NETWORK_PROTOCOL_VERSION] = self.protocol_version
        if self.user_agent is not None:
            tags[_USER_AGENT] = self.user_agent
        tags.update(self._tags)
        add_outcome_tags(tags, _RESPONSE_STATUS_CODE, self.status_code,
                         self.response_size, self.aborted, self.route)
        route_tags = self.route_tags
        if route_tags:
            limit = self._tracer._value_length  # as set_tag would cut them
            for key, value in route_tags.items():
                if key not in tags:
                    tags[key] = value[:limit] if type(value) is str else value
        if self.error_type is not None:
            tags[_ERROR_TYPE] = self.error_type
        return tags

    @tags.setter
    def tags(self, tags: dict[str, Any]) -> None:
        self._tags = tags
        self.merged = True


#: The tag names StableServerSpan's fields stand for (see SERVER_FIELD_TAGS).
STABLE_FIELD_TAGS = frozenset((
    _SPAN_KIND, _COMPONENT, semconv.REQUEST_METHOD, semconv.METHOD_ORIGINAL,
    semconv.URL_SCHEME, semconv.URL_PATH, semconv.URL_QUERY, semconv.SERVER_ADDRESS,
    semconv.SERVER_PORT, semconv.NETWORK_PEER_ADDRESS, semconv.NETWORK_PEER_PORT,
    semconv.CLIENT_ADDRESS, semconv.NETWORK_PROTOCOL_VERSION, semconv.USER_AGENT,
    semconv.RESPONSE_STATUS_CODE, _ERROR, TAG_RESPONSE_SIZE, TAG_ABORTED, TAG_ROUTE,
    semconv.ERROR_TYPE))


class UnsampledSpan(opentracing.Span):
    """A span that is not sampled: it propagates its context and baggage, records nothing.

    ``tags`` is an empty read-only mapping and ``logs`` is ``None`` so generic code that
    inspects a span does not need to know which kind it holds.
    """

    __slots__ = ('_tracer', '_context', 'operation_name')

    # PERF: as Span.context.
    context = property(attrgetter('_context'),
                       doc='The span context (see opentracing.Span.context).')

    tags: Mapping[str, Any] = _NO_TAGS
    logs = None
    references = None

    def __init__(self, tracer: SpanOwner, context: SpanContext, operation_name: str) -> None:
        self._tracer = tracer
        self._context = context
        self.operation_name = operation_name

    def set_operation_name(self, operation_name: str) -> UnsampledSpan:
        """Rename the span (kept only so that the name can be read back)."""
        self.operation_name = operation_name
        return self

    def set_tag(self, key: str, value: Any) -> UnsampledSpan:
        """Do nothing: an unsampled span keeps no tags."""
        return self

    def set_tags(self, tags: Mapping[str, Any]) -> UnsampledSpan:
        """Do nothing: an unsampled span keeps no tags."""
        return self

    def log_kv(self, key_values: dict[str, Any],
               timestamp: Optional[float] = None) -> UnsampledSpan:
        """Do nothing: an unsampled span keeps no logs."""
        return self

    def set_baggage_item(self, key: str, value: Optional[str]) -> UnsampledSpan:
        """Set (or with ``None`` remove) a baggage item; baggage propagates regardless
        of sampling. The W3C limits apply as for :meth:`Span.set_baggage_item`."""
        context = _with_baggage_item(self._context, key, value)
        if context is not None:
            self._context = context
        return self

    def get_baggage_item(self, key: str) -> Optional[str]:
        """Return a baggage item, or ``None``."""
        return self._context.baggage.get(key)

    def finish(self, finish_time: Optional[float] = None) -> None:
        """Do nothing: an unsampled span is never reported."""

    def __exit__(self, exc_type: object, exc_val: Optional[BaseException],
                 exc_tb: object) -> None:
        # Nothing to record on error; finish() is still called in case it was wrapped.
        self.finish()

    def __repr__(self) -> str:
        return (f'<UnsampledSpan {self.operation_name!r} '
                f'trace_id={self._context.trace_id} span_id={self._context.span_id}>')


def _with_baggage_item(context: SpanContext, key: str, value: Optional[str]
                       ) -> Optional[SpanContext]:
    """The context with the item set, or None when W3C baggage could not carry it."""
    if value is not None:
        baggage = context.baggage
        size = len(str(key)) + len(str(value)) + 1
        if (len(baggage) >= MAX_MEMBERS and key not in baggage) or size > MAX_MEMBER_BYTES \
                or size + sum(len(name) + len(item) + 2 for name, item in baggage.items()
                              if name != key) > MAX_BYTES:
            _log.debug('baggage item %.40r not set: over the W3C baggage limits', key)
            return None
    return context.with_baggage_item(key, value)
