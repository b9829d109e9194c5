"""OpenTelemetry bridge: the middleware on an OpenTelemetry SDK, through the OpenTracing shim.

``FALCON_TRACING_TRACER=otel`` (extra ``[otel]``: ``opentelemetry-sdk`` and
``opentelemetry-opentracing-shim``) makes :func:`falcon_tracing_wsgi.wrap` install an
OpenTracing tracer that is OpenTelemetry underneath, so every OpenTelemetry span exporter
(OTLP included) can receive the spans of the unchanged middleware, and OpenTelemetry
instrumentation in the same process joins the same traces.

What :func:`build_tracer` wires, and why:

* **The tracer provider.** If the process already has an OpenTelemetry SDK tracer
  provider (``opentelemetry-instrument``, or the application's own setup), it is used
  as it is: one process, one provider. Otherwise a new
  :class:`~opentelemetry.sdk.trace.TracerProvider` is built and made OpenTelemetry's
  global provider:

  - resource: ``service.name`` from ``FALCON_TRACING_SERVICE_NAME`` (else
    ``OTEL_SERVICE_NAME``) and ``FALCON_TRACING_TAGS`` (else
    ``OTEL_RESOURCE_ATTRIBUTES``) on top of what the SDK detects;
  - exporters: ``FALCON_TRACING_OTEL_TRACES_EXPORTER`` (else ``OTEL_TRACES_EXPORTER``,
    default ``otlp``), each looked up by its entry-point name in the
    ``opentelemetry_traces_exporter`` group as the SDK's own auto-configuration does
    (``console`` ships with the SDK; ``otlp`` needs ``opentelemetry-exporter-otlp`` and
    means ``otlp_proto_grpc`` or ``otlp_proto_http`` by ``OTEL_EXPORTER_OTLP_PROTOCOL``,
    as in the SDK), each behind a ``BatchSpanProcessor``. The exporters read their own
    ``OTEL_EXPORTER_*`` variables. A name no installed package provides stops startup
    with a message saying what to install;
  - sampler: the one the configuration resolved from ``FALCON_TRACING_SAMPLER`` (else
    ``OTEL_TRACES_SAMPLER``) and ``FALCON_TRACING_SAMPLE_RATE`` (else
    ``OTEL_TRACES_SAMPLER_ARG``), built as the SDK's own ``ParentBased``,
    ``TraceIdRatioBased``, ``ALWAYS_ON``, ``ALWAYS_OFF``, so both tracers sample alike.
    ``FALCON_TRACING_SAMPLE_RATE_LIMIT`` and ``FALCON_TRACING_TRUST_INBOUND`` do not
    apply: OpenTelemetry's parent-based samplers always follow the caller.

* **Propagation** is this package's: the formats of ``FALCON_TRACING_PROPAGATION``
  (else ``OTEL_PROPAGATORS``), B3, W3C, Jaeger and X-Ray alike, through
  :class:`OpenTracingPropagator`, an OpenTelemetry ``TextMapPropagator`` around the
  same codecs the built-in tracer uses. The bridge tracer uses it directly; when the
  bridge built the provider it also becomes OpenTelemetry's global propagator, so
  OpenTelemetry instrumentation propagates the same headers. OpenTelemetry has no
  "defer" decision: a caller that left the decision open (B3 without a sampled flag,
  X-Ray ``Sampled=?``) is continued as not sampled, as OpenTelemetry's own B3
  propagator does. Baggage does not cross the shim (the shim keeps no extracted
  baggage); trace context does.

* **OpenTracing tags with an OpenTelemetry meaning** are mapped by thin wrappers at the
  OpenTelemetry API level (no patching): ``span.kind`` given when a span starts sets the
  OpenTelemetry span kind (the outbound helpers pass it then; a kind set later, with
  ``set_tag``, stays an attribute because OpenTelemetry fixes the kind at start), and an
  ``error`` tag of ``True`` sets the span status to ``ERROR``. Every tag is kept as an
  attribute under its OpenTracing name (``http.status_code``, ``http.url``, ...).

* :meth:`BridgeTracer.flush` and :meth:`BridgeTracer.close` give the bridge the same
  ``flush(timeout)``/``close(timeout)`` as the built-in tracer; ``close`` shuts the
  provider down only if the bridge built it. The SDK's batch processor is fork-safe and
  the provider shuts down at exit, so gunicorn needs nothing more.

This module is imported only when the otel tracer is chosen; importing it without the
``[otel]`` extra raises an ImportError that says what to install.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import opentracing
from opentracing import Format, UnsupportedFormatException

from . import __version__
from .config import ConfigError, TracingConfig
from .propagation import build_propagator
from .tracer.context import SpanContext

try:
    from opentelemetry import baggage as _baggage
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import (CarrierT, Getter, Setter,
                                                   TextMapPropagator, default_getter,
                                                   default_setter)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import (ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler,
                                                  TraceIdRatioBased)
    from opentelemetry.shim.opentracing_shim import SpanContextShim, TracerShim
    from opentelemetry.trace import (INVALID_SPAN_CONTEXT, NonRecordingSpan, SpanKind,
                                     Status, StatusCode, TraceFlags, TraceState)
    from opentelemetry.util.types import Attributes
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(f'FALCON_TRACING_TRACER=otel needs the [otel] extra: pip install '
                      f'"falcon-tracing-wsgi[otel]" ({exc})') from exc

__all__ = ['build_tracer', 'BridgeTracer', 'OpenTracingPropagator', 'EXPORTER_GROUP']

_log = logging.getLogger(__name__)

#: The entry-point group OpenTelemetry span exporters register their names in.
EXPORTER_GROUP = 'opentelemetry_traces_exporter'
_HEADER_FORMATS = (Format.HTTP_HEADERS, Format.TEXT_MAP)
#: W3C Trace Context Level 2's random trace-id flag in the trace-flags byte.
_RANDOM_FLAG = 0x02
_KINDS = {'server': SpanKind.SERVER, 'client': SpanKind.CLIENT,
          'producer': SpanKind.PRODUCER, 'consumer': SpanKind.CONSUMER}


class OpenTracingPropagator(TextMapPropagator):
    """This package's propagation formats as an OpenTelemetry ``TextMapPropagator``.

    Args:
        names: format names as for
            :func:`~falcon_tracing_wsgi.propagation.build_propagator`; empty for none.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._propagator = build_propagator(names) if names else None
        self._fields = set(self._propagator.fields) if self._propagator else set()

    @property
    def fields(self) -> set[str]:
        """The lower-case header names the formats read."""
        return self._fields

    def extract(self, carrier: CarrierT, context: Optional[Context] = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        """Return ``context`` with the caller's span (and baggage) read from ``carrier``."""
        if context is None:
            context = Context()
        if self._propagator is None:
            return context
        try:
            ours = self._propagator.extract(_header_view(carrier, getter))
        except Exception:  # client-controlled input: a new trace, never an error
            _log.debug('could not extract a span context', exc_info=True)
            return context
        if ours is None:
            return context
        for key, value in ours.baggage.items():
            context = _baggage.set_baggage(key, value, context)
        if ours.trace_id is not None and ours.span_id is not None:
            # W3C Level 2's random bit (0x02) rides along: TraceFlags is a plain byte.
            flags = TraceFlags((TraceFlags.SAMPLED if ours.sampled or ours.debug
                                else TraceFlags.DEFAULT)
                               | (_RANDOM_FLAG if ours.random_trace_id else 0))
            state = TraceState.from_header([ours.tracestate]) if ours.tracestate else None
            parent = _trace.SpanContext(int(ours.trace_id, 16), int(ours.span_id, 16),
                                        is_remote=True, trace_flags=flags,
                                        trace_state=state)
            context = _trace.set_span_in_context(NonRecordingSpan(parent), context)
        return context

    def inject(self, carrier: CarrierT, context: Optional[Context] = None,
               setter: Setter[CarrierT] = default_setter) -> None:
        """Write the context's span (and baggage) into ``carrier`` in every format."""
        if self._propagator is None:
            return
        span_context = _trace.get_current_span(context).get_span_context()
        items = {key: str(value) for key, value in _baggage.get_all(context).items()}
        if span_context.is_valid:
            state = span_context.trace_state.to_header() if span_context.trace_state \
                else None
            ours = SpanContext(f'{span_context.trace_id:032x}', f'{span_context.span_id:016x}',
                               None, span_context.trace_flags.sampled, False, items,
                               state or None, None,
                               bool(span_context.trace_flags & _RANDOM_FLAG))
        elif items:
            ours = SpanContext(None, None, None, None, False, items)
        else:
            return
        headers: dict[str, str] = {}
        self._propagator.inject(ours, headers)
        for name, value in headers.items():
            setter.set(carrier, name, value)


def _header_view(carrier: Any, getter: Getter[Any]) -> Any:
    """A mapping our codecs can read: lower-case names, one string value each."""
    if getter is default_getter and getattr(carrier, 'case_insensitive', False):
        return carrier  # the middleware's environ view already answers lower-case names
    view: dict[str, str] = {}
    for name in getter.keys(carrier):
        if not isinstance(name, str):
            continue
        values = getter.get(carrier, name)
        if values:
            view.setdefault(name.lower(), ','.join(values))
    return view


class _Span(_trace.Span):
    """An OpenTelemetry span that turns the OpenTracing ``error`` tag into an ERROR status."""

    __slots__ = ('_span',)

    def __init__(self, span: _trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)
        if key == 'error' and value is True:
            self._span.set_status(Status(StatusCode.ERROR))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def end(self, end_time: Optional[int] = None) -> None:
        self._span.end(end_time)

    def get_span_context(self) -> _trace.SpanContext:
        return self._span.get_span_context()

    def add_event(self, name: str, attributes: Attributes = None,
                  timestamp: Optional[int] = None) -> None:
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: _trace.SpanContext, attributes: Attributes = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Any, description: Optional[str] = None) -> None:
        self._span.set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Attributes = None,
                         timestamp: Optional[int] = None, escaped: bool = False) -> None:
        self._span.record_exception(exception, attributes, timestamp, escaped)

    def unwrap(self) -> _trace.Span:
        """The SDK span underneath."""
        return self._span


class _Tracer(_trace.Tracer):
    """An OpenTelemetry tracer that reads the OpenTracing ``span.kind`` tag at start."""

    def __init__(self, tracer: _trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Optional[Context] = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes = None,
                   links: Optional[Sequence[_trace.Link]] = None,
                   start_time: Optional[int] = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> _trace.Span:
        if kind is SpanKind.INTERNAL and attributes:
            tag = attributes.get('span.kind')
            if isinstance(tag, str):
                kind = _KINDS.get(tag.lower(), kind)
        span = _Span(self._tracer.start_span(name, context, kind, attributes, links,
                                             start_time, record_exception,
                                             set_status_on_exception))
        if attributes and attributes.get('error') is True:
            span.set_status(Status(StatusCode.ERROR))
        return span

    def start_as_current_span(  # type: ignore[override]  # a context manager, as the API's
            self, name: str, context: Optional[Context] = None,
            kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes = None,
            links: Optional[Sequence[_trace.Link]] = None, start_time: Optional[int] = None,
            record_exception: bool = True, set_status_on_exception: bool = True,
            end_on_exit: bool = True) -> Iterator[_trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time,
                               record_exception, set_status_on_exception)
        return _trace.use_span(  # type: ignore[return-value]  # the API's own return
            span, end_on_exit=end_on_exit, record_exception=record_exception,
            set_status_on_exception=set_status_on_exception)


class BridgeTracer(TracerShim):
    """The OpenTracing shim on an OpenTelemetry tracer provider, with this package's formats.

    Args:
        provider: the SDK tracer provider spans are created by.
        propagator: reads and writes ``HTTP_HEADERS``/``TEXT_MAP`` carriers.
        owns_provider: whether :meth:`close` shuts ``provider`` down.
    """

    def __init__(self, provider: TracerProvider, propagator: TextMapPropagator, *,
                 owns_provider: bool = False) -> None:
        super().__init__(_Tracer(provider.get_tracer('falcon_tracing_wsgi', __version__)))
        self._provider = provider
        self._propagator = propagator
        self._owns_provider = owns_provider

    @property
    def provider(self) -> TracerProvider:
        """The OpenTelemetry SDK tracer provider underneath."""
        return self._provider

    @property
    def propagator(self) -> TextMapPropagator:
        """The propagator used for ``HTTP_HEADERS`` and ``TEXT_MAP``."""
        return self._propagator

    def inject(self, span_context: Any, format: object, carrier: object) -> None:
        """Write ``span_context`` into ``carrier`` in the configured formats."""
        if format not in _HEADER_FORMATS:
            raise UnsupportedFormatException(format)
        if isinstance(span_context, opentracing.Span):
            span_context = span_context.context
        otel = span_context.unwrap() if isinstance(span_context, SpanContextShim) else None
        if otel is None or not otel.is_valid:
            return
        try:
            self._propagator.inject(carrier, _trace.set_span_in_context(
                NonRecordingSpan(otel)))
        except Exception:
            _log.warning('the propagator failed to inject a span context', exc_info=True)

    def extract(  # type: ignore[override]  # the stubs forget the documented None
            self, format: object, carrier: object) -> Optional[SpanContextShim]:
        """Read a span context from ``carrier``; ``None`` when it holds no valid one."""
        if format not in _HEADER_FORMATS:
            raise UnsupportedFormatException(format)
        context = self._propagator.extract(carrier)
        otel = _trace.get_current_span(context).get_span_context()
        if otel is INVALID_SPAN_CONTEXT or not otel.is_valid:
            return None
        return SpanContextShim(otel)

    def flush(self, timeout: float = 5.0) -> bool:
        """Export what the span processors hold, within ``timeout`` seconds."""
        try:
            return bool(self._provider.force_flush(max(0, int(timeout * 1000))))
        except Exception:
            _log.warning('the OpenTelemetry provider failed to flush', exc_info=True)
            return False

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, then shut the provider down if this bridge built it."""
        ok = self.flush(timeout)
        if self._owns_provider:
            try:
                self._provider.shutdown()
            except Exception:
                _log.warning('the OpenTelemetry provider failed to shut down', exc_info=True)
                return False
        return ok

    def __repr__(self) -> str:
        return f'BridgeTracer(provider={self._provider!r}, owns_provider={self._owns_provider})'


def build_tracer(config: TracingConfig, *,
                 tracer_provider: Optional[TracerProvider] = None) -> BridgeTracer:
    """The OpenTracing tracer for ``config`` on an OpenTelemetry SDK tracer provider.

    Args:
        config: the settings (``propagation``, ``service_name``, ``tags``,
            ``otel_traces_exporter``, ``sample_rate`` are used).
        tracer_provider: use this provider (tests pass one with an in-memory exporter);
            by default the global SDK provider if there is one, else a new one that
            becomes global (see the module docstring).

    Raises:
        ConfigError: an exporter name that no installed package provides.
    """
    propagator = OpenTracingPropagator(config.propagation)
    if tracer_provider is not None:
        return BridgeTracer(tracer_provider, propagator)
    current = _trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        _log.info('falcon-tracing-wsgi: using the OpenTelemetry tracer provider already '
                  'installed in this process')
        return BridgeTracer(current, propagator)
    provider = _new_provider(config)
    _trace.set_tracer_provider(provider)
    _propagate.set_global_textmap(propagator)
    return BridgeTracer(provider, propagator, owns_provider=True)


def _new_provider(config: TracingConfig) -> TracerProvider:
    exporters = [_exporter(name) for name in config.otel_traces_exporter if name != 'none']
    attributes: dict[str, Any] = dict(config.tags)
    attributes['service.name'] = config.service_name
    # The span limits as configured (FALCON_TRACING_*, else the same OTEL_* variables the
    # SDK would read), so both tracers keep the same bound; see tracer/limits.py.
    limits = SpanLimits(max_span_attributes=config.span_attribute_count_limit,
                        max_events=config.span_event_count_limit,
                        max_event_attributes=config.event_attribute_count_limit,
                        max_span_attribute_length=config.attribute_value_length_limit)
    provider = TracerProvider(sampler=_sampler(config), resource=Resource.create(attributes),
                              span_limits=limits)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _sampler(config: TracingConfig) -> Sampler:
    """The OpenTelemetry sampler named by ``config.sampler`` (already resolved from
    ``FALCON_TRACING_SAMPLER``/``OTEL_TRACES_SAMPLER`` and the rate by the config)."""
    rate = config.effective_sample_rate
    root: Sampler = (ALWAYS_ON if rate == 1.0 else ALWAYS_OFF if rate == 0.0
                     else TraceIdRatioBased(rate))
    return ParentBased(root) if config.parent_based else root


def _exporter(name: str) -> SpanExporter:
    found = _entry_points(EXPORTER_GROUP)
    name = _otlp_entry_point(name, found)
    if name not in found:
        known = ', '.join(sorted(found)) or 'none'
        hint = (' (pip install opentelemetry-exporter-otlp)' if name.startswith('otlp')
                else ' (pip install opentelemetry-exporter-zipkin)' if name.startswith('zipkin')
                else '')
        raise ConfigError(f'FALCON_TRACING_OTEL_TRACES_EXPORTER / OTEL_TRACES_EXPORTER names '
                          f'the OpenTelemetry span exporter {name!r}, which no installed '
                          f'package provides{hint}; installed: {known}')
    exporter: SpanExporter = found[name].load()()
    return exporter


def _otlp_entry_point(name: str, found: Mapping[str, Any]) -> str:
    """The entry point ``otlp`` means: gRPC or HTTP, by ``OTEL_EXPORTER_OTLP_PROTOCOL``.

    No package registers ``otlp`` itself; the SDK's auto-configuration maps it to
    ``otlp_proto_grpc`` or ``otlp_proto_http`` from the protocol variables. The SDK's
    (private) helper for that is used when it exists, so the protocol variables mean
    what they mean under ``opentelemetry-instrument``; otherwise gRPC is preferred when
    installed, as the SDK's default is.
    """
    if name != 'otlp' or name in found:
        return name
    try:
        from opentelemetry.sdk._configuration import _get_exporter_entry_point
    except ImportError:  # pragma: no cover - an SDK without the helper
        pass
    else:
        try:
            mapped = _get_exporter_entry_point(name, 'traces')
        except RuntimeError as exc:  # "Unsupported OTLP protocol ... is configured"
            raise ConfigError(f'OTEL_EXPORTER_OTLP_PROTOCOL is not valid for the otlp '
                              f'exporter: {exc}') from None
        if isinstance(mapped, str):
            return mapped
    for candidate in ('otlp_proto_grpc', 'otlp_proto_http'):
        if candidate in found:
            return candidate
    return name


def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    points: Any = importlib.metadata.entry_points()
    if hasattr(points, 'select'):  # Python 3.10+
        selected = points.select(group=group)
    else:  # pragma: no cover - Python 3.9 returns a dict of groups
        selected = points.get(group, ())
    return {point.name: point for point in selected}
