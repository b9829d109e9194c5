"""The composition root: configuration -> reporter -> tracer -> global tracer -> wrapper.

This is the one module that knows every concrete piece (the tracer, the propagation
formats, the export pipeline with its formats and transports) and wires them together; the middleware knows only the
OpenTracing API, and the tracer knows only the Reporter protocol.

:func:`wrap` is the call for a gunicorn entrypoint::

    # app.py
    from falcon_tracing_wsgi import wrap
    app = wrap(create_app())        # gunicorn app:app

It reads the environment once, builds the tracer, installs it as opentracing's global
tracer and returns the wrapped app (or the app itself when tracing is disabled).

Fork safety: building the tracer starts no thread and opens no connection. What must be
per process (the reporter's queue, worker thread and HTTP connection) is created on the
first span in each process and re-armed after ``fork()``, so ``gunicorn --preload``, where
``wrap()`` runs once in the master before the workers fork, works without any hook. The
middleware looks the global tracer up per request, so a tracer re-installed in a worker
(``falcon_tracing_wsgi.gunicorn.post_fork``) is picked up too.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Optional

import opentracing

from . import _semconv
from .config import ConfigError, TracingConfig, shown_url
from .middleware import TracingMiddleware
from .propagation import build_propagator
from .tracer.ids import XRayIdGenerator
from .tracer.limits import SpanLimits
from .tracer.sampler import build_sampler
from .tracer.scope import build_scope_manager
from .tracer.tracer import Tracer
from .export.file import FileSender
from .export.http import HttpSender, resolver_host
from .export.pipeline import BatchReporter, NoopReporter
from .export.zipkin import Endpoint, JsonV2Encoder

__all__ = ['wrap', 'install', 'installed_config', 'build_tracer', 'build_reporter',
           'span_limits']

_log = logging.getLogger(__name__)


def wrap(app: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """Trace a WSGI app with the tracer configured by the environment.

    Args:
        app: the WSGI app (a ``falcon.App`` gets the Falcon component automatically).
        **options: :class:`~falcon_tracing_wsgi.config.TracingConfig` fields that take
            precedence over the environment.

    Returns:
        The wrapped app, or ``app`` itself when ``FALCON_TRACING_ENABLED=false``.

    Raises:
        ConfigError: a setting is invalid (the message names the variable).
    """
    config = TracingConfig.from_env(**options)
    if not config.enabled:
        _log.info('falcon-tracing-wsgi is disabled; the app is not wrapped')
        return app
    install(config)
    return TracingMiddleware(app, config=config)


#: The configuration of the tracer :func:`install` set up last in this process (the
#: gunicorn hooks rebuild the tracer in each worker from it).
_installed: Optional[TracingConfig] = None


def install(config: Optional[TracingConfig] = None) -> opentracing.Tracer:
    """Build the tracer for ``config`` and make it opentracing's global tracer."""
    global _installed
    if config is None:
        config = TracingConfig.from_env()
    tracer = build_tracer(config)
    opentracing.set_global_tracer(tracer)
    # Client spans (outbound.py) are started from library code without a configuration.
    _semconv.set_default(config.effective_http_semconv, config.http_known_methods)
    _installed = config
    reporter = config.effective_reporter
    # NOTE: never a URL's credentials or query, nor the headers (they may carry tokens).
    where = (f' url={shown_url(config.zipkin_url)}' if reporter == 'zipkin' else
             f' endpoint={shown_url(config.effective_otlp_endpoint)} '
             f'protocol={config.otlp_protocol}' if reporter == 'otlp' else '')
    _log.info('falcon-tracing-wsgi: service=%s propagation=%s sampler=%s sample_rate=%s '
              'reporter=%s%s', config.service_name, ','.join(config.propagation) or 'none',
              config.sampler, config.effective_sample_rate, reporter, where)
    return tracer


def installed_config() -> Optional[TracingConfig]:
    """The configuration last passed to :func:`install` in this process, if any."""
    return _installed


def build_tracer(config: TracingConfig, reporter: Any = None) -> opentracing.Tracer:
    """Wire the tracer for ``config`` (``reporter`` overrides the configured one).

    ``FALCON_TRACING_TRACER=otel`` gives the OpenTelemetry bridge
    (:func:`falcon_tracing_wsgi.otel.build_tracer`; ``reporter`` is not used).
    """
    if config.tracer == 'otel':
        from .otel import build_tracer as build_otel_tracer  # the [otel] extra, on demand
        return build_otel_tracer(config)
    propagator: Any = build_propagator(config.propagation) if config.propagation \
        else _NoPropagation()
    return Tracer(
        reporter if reporter is not None else build_reporter(config),
        build_sampler(config.effective_sample_rate, config.sample_rate_limit),
        propagator,
        build_scope_manager(config.scope_manager),
        trace_id_128bit=config.trace_id_128bit,
        # A sampler that is not parent-based ignores incoming decisions (OpenTelemetry's
        # always_on/always_off/traceidratio); a local parent's decision is the same as
        # its own would be, so only the inbound one is dropped.
        trust_inbound_sampling=config.trust_inbound and config.parent_based,
        id_generator=XRayIdGenerator() if config.effective_xray_ids else None,
        span_limits=span_limits(config),
    )


def span_limits(config: TracingConfig) -> SpanLimits:
    """The span limits ``config`` sets for the built-in tracer."""
    return SpanLimits(attribute_count=config.span_attribute_count_limit,
                      event_count=config.span_event_count_limit,
                      event_attribute_count=config.event_attribute_count_limit,
                      value_length=config.attribute_value_length_limit)


def build_reporter(config: TracingConfig) -> Any:
    """The reporter named by ``config.effective_reporter``."""
    kind = config.effective_reporter
    if kind == 'none':
        return NoopReporter()
    if kind == 'xray':
        # PERF: the X-Ray reporter is imported only when chosen (~70 kB per process).
        from . import __version__
        from .export.udp import UdpSender
        from .export.xray import SegmentEncoder
        return BatchReporter(
            UdpSender(config.xray_daemon_address, timeout=config.export_timeout),
            SegmentEncoder(config.service_name, tags=config.tags,
                           working_directory=os.getcwd(), sdk_version=__version__),
            **_pipeline_options(config))
    if kind == 'otlp':
        return _otlp_reporter(config)
    encoder = JsonV2Encoder(Endpoint(config.service_name, ipv4=_host_ipv4()),
                            process_tags=dict(config.tags))
    sender: Any
    if kind == 'zipkin':
        assert config.zipkin_url is not None  # TracingConfig checks this
        sender = HttpSender(config.zipkin_url, connect_timeout=config.export_timeout,
                            read_timeout=config.export_timeout,
                            headers=dict(config.zipkin_headers), gzip=config.zipkin_gzip)
    else:
        sender = FileSender(config.log_file,  # None: sys.stderr at each write
                            timeout=config.export_timeout)
    return BatchReporter(sender, encoder, **_pipeline_options(config))


def _pipeline_options(config: TracingConfig) -> dict[str, Any]:
    """The export pipeline's settings, the same for every format and transport."""
    return {'max_queue_size': config.queue_size, 'max_queue_bytes': config.queue_bytes,
            'batch_size': config.batch_size, 'max_batch_bytes': config.batch_bytes,
            'flush_interval': config.flush_interval, 'max_retries': config.max_retries,
            'shutdown_timeout': config.shutdown_timeout}


def _otlp_reporter(config: TracingConfig) -> BatchReporter:
    """OTLP/HTTP: the format's encoder and framing, the HTTP sender with OTLP's rules."""
    # PERF: imported only when chosen, as the X-Ray reporter is.
    from . import __version__
    from .export.otlp import RETRYABLE_STATUSES, JsonEncoder, ProtobufEncoder
    encoder: Any = (JsonEncoder if config.otlp_protocol == 'http/json' else ProtobufEncoder)(
        _otlp_resource(config, __version__), __version__, process_id=os.getpid)
    sender = HttpSender(config.effective_otlp_endpoint, connect_timeout=config.otlp_timeout,
                        read_timeout=config.otlp_timeout, headers=dict(config.otlp_headers),
                        gzip=config.otlp_compression == 'gzip',
                        ssl_context=_otlp_ssl_context(config),
                        content_type=encoder.content_type,
                        retry_statuses=RETRYABLE_STATUSES, retry_after=True,
                        parse_response=encoder.read_response)
    return BatchReporter(sender, encoder, **_pipeline_options(config))


def _otlp_ssl_context(config: TracingConfig) -> Optional[ssl.SSLContext]:
    """The TLS settings of the OTLP exporter variables, loaded once at startup (None: the
    sender's default, the system's certificate authorities)."""
    if config.otlp_certificate is None and config.otlp_client_certificate is None:
        return None
    try:
        context = ssl.create_default_context(cafile=config.otlp_certificate)
        if config.otlp_client_certificate is not None:
            context.load_cert_chain(config.otlp_client_certificate, config.otlp_client_key)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f'the OTLP TLS files (OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE, '
                          f'CLIENT_CERTIFICATE, CLIENT_KEY, or their FALCON_TRACING_OTLP_* '
                          f'forms) could not be loaded: {exc}') from None
    return context


def _otlp_resource(config: TracingConfig, version: str) -> dict[str, Any]:
    """The OTLP resource attributes of this process (``process.pid`` aside: the encoder
    asks for it per batch, so a forked child writes its own).

    ``service.name`` is the configured service name; when that is the default and the
    tags (``OTEL_RESOURCE_ATTRIBUTES``) name one, theirs (OpenTelemetry's precedence:
    ``OTEL_SERVICE_NAME``, then ``service.name`` in the attributes). The tags may override
    the other attributes.
    """
    tags = dict(config.tags)
    service = config.service_name
    default = TracingConfig.__dataclass_fields__['service_name'].default
    if service == default and tags.get('service.name'):
        service = tags['service.name']
    resource: dict[str, Any] = {'service.name': service,
                                'telemetry.sdk.name': 'falcon_tracing_wsgi',
                                'telemetry.sdk.language': 'python',
                                'telemetry.sdk.version': version}
    try:
        resource['host.name'] = socket.gethostname()
    except OSError:  # pragma: no cover - the attribute is left out
        pass
    resource.update(tags)
    resource['service.name'] = service
    return resource


@functools.lru_cache(maxsize=1)
def _host_ipv4() -> Optional[str]:
    """This host's IPv4 address for ``localEndpoint``, or None when unknown.

    Resolved once at startup from the host name (normally ``/etc/hosts``); a failure only
    leaves the address out of the spans. Cached: a gunicorn worker rebuilding its
    tracer in ``post_fork`` must not wait on a slow resolver again.
    """
    try:
        address = socket.gethostbyname(resolver_host(socket.gethostname()))
    except (OSError, UnicodeError):
        return None
    return address if address.count('.') == 3 else None


class _NoPropagation:
    """``OTEL_PROPAGATORS=none``: extract nothing, inject nothing."""

    fields: tuple[str, ...] = ()

    def extract(self, carrier: Mapping[str, str]) -> None:
        return None

    def inject(self, context: Any, carrier: MutableMapping[str, str]) -> None:
        return None
