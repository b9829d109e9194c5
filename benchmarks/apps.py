"""The app under test and every variant of it the benchmarks compare.

The app is the one the baseline measurements used: a ``falcon.App`` with
``GET /hello`` -> ``{"message": "hello"}`` and ``GET /users/{user_id}`` ->
``{"user_id": ...}``.

:func:`build` returns ``(wsgi_app, finish)`` for a variant name; ``finish(timeout)``
flushes whatever the variant exports and returns the number of spans it handed over
(``None`` when it exports nothing). Variants read their settings from the environment
the benchmark gives the process (``FALCON_TRACING_*``, ``BENCH_SINK_URL``), as a real
deployment would.

For gunicorn (``bench_e2e.py``), ``gunicorn apps:app`` builds the variant named by
``BENCH_VARIANT`` in each worker.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import falcon

#: name -> one-line description, in table order.
VARIANTS = {
    'bare': 'bare Falcon app (no tracing)',
    'traced': 'wrap(): sampled, Zipkin v2 export to the sink',
    'traced_otlp': 'wrap(): sampled, OTLP/HTTP protobuf export to the sink',
    'traced_otlp_json': 'wrap(): sampled, OTLP/HTTP JSON export to the sink',
    'traced_otlp_old_names': 'wrap(): sampled, OTLP/HTTP protobuf with OpenTracing\'s HTTP tag '
                             'names (the spans Zipkin gets)',
    'unsampled': 'wrap() with FALCON_TRACING_SAMPLE_RATE=0',
    'excluded': 'wrap(), request path excluded (FALCON_TRACING_EXCLUDE)',
    'traced_noexport': 'wrap(): sampled, FALCON_TRACING_REPORTER=none (diagnostic)',
    'noop': 'TracingMiddleware with opentracing.Tracer() (no-op)',
    'otel': 'OpenTelemetry WSGI middleware + SDK + BatchSpanProcessor, discarding exporter',
    'otel_zipkin': 'OpenTelemetry WSGI middleware + SDK + BatchSpanProcessor, ZipkinExporter '
                   '(JSON v2) to the sink',
}
OTEL_VARIANTS = ('otel', 'otel_zipkin')
#: Variants whose process also gets OTEL_EXPORTER_OTLP_ENDPOINT (the sink's base URL).
OTLP_VARIANTS = ('traced_otlp', 'traced_otlp_json', 'traced_otlp_old_names')
#: Variants no benchmark runs by default: OpenTelemetry's OTLP exporter, and the stages
#: that split the sampled request's cost for ``bench_instructions.py --breakdown`` (each
#: adds one stage to the previous).
EXTRA_VARIANTS = {
    'otel_otlp': 'OpenTelemetry WSGI middleware + SDK + BatchSpanProcessor, OTLPSpanExporter '
                 '(HTTP, protobuf) to the sink',
    'floor': 'the floor yardstick (floor.py): the same headers, span and Zipkin export to the '
             'sink, none of the package\'s options or safety (issue 15)',
    'floor_kept': 'floor + the behaviours the package keeps on that path (floor.py), written '
                  'as cheaply',
    'floor_complete': 'floor_kept + every test the whole default job pays on that path '
                      '(floor.py): tracer lookup, sampler, URL with query, option tests, '
                      'the iterable\'s close()',
    'floor_unsampled': 'floor_complete with FALCON_TRACING_SAMPLE_RATE=0: an unsampled new '
                       'trace\'s job (floor.py), written as cheaply',
    'floor_excluded': 'floor_complete, request path excluded (FALCON_TRACING_EXCLUDE): the '
                      'exclusion test and the Falcon hooks (floor.py)',
    'bare_plain': 'the bare app called from a plain Python WSGI function',
    'span_only': 'bare_plain + one span started and finished per request through the '
                 'OpenTracing API (our tracer, no reporter work)',
    'core_noexport': 'wrap() of bare_plain (so no Falcon component): sampled, '
                     'FALCON_TRACING_REPORTER=none',
    'traced_encode': 'wrap(): sampled, each span encoded to Zipkin v2 JSON as it finishes, '
                     'nothing queued or sent',
    'traced_discard': 'wrap(): sampled, the batch reporter (queue, worker thread, batches, '
                      'Zipkin v2 JSON) with a sender that discards the bodies',
    'unsampled_plain': 'wrap() of bare_plain (no Falcon component), unsampled',
    'excluded_plain': 'wrap() of bare_plain (no Falcon component), request path excluded',
    'unsampled_rate': 'wrap() with FALCON_TRACING_SAMPLE_RATE=1e-9: the unsampled request of '
                      'a sampling rate (ProbabilisticSampler), as in production',
    'unsampled_health_rule': 'wrap() with FALCON_TRACING_SAMPLE_RATE=0 and an exclusion rule '
                             'the requests do not match (GET /health): what a rule costs '
                             'every other request',
    'traced_children': 'wrap(): sampled, Zipkin v2 export to the sink, default settings; every '
                       'request also makes 30 child spans (bench_delivery\'s gunicorn scenario)',
}
#: Settings each variant's process gets on top of FALCON_TRACING_SERVICE_NAME and
#: FALCON_TRACING_ZIPKIN_URL (the sink).
VARIANT_ENV = {
    'traced': {'FALCON_TRACING_SAMPLE_RATE': '1'},
    'floor': {'FALCON_TRACING_SAMPLE_RATE': '1'},
    'floor_kept': {'FALCON_TRACING_SAMPLE_RATE': '1'},
    'floor_complete': {'FALCON_TRACING_SAMPLE_RATE': '1'},
    'floor_unsampled': {'FALCON_TRACING_SAMPLE_RATE': '0'},
    'floor_excluded': {'FALCON_TRACING_EXCLUDE': 'GET /hello,GET /users/*'},
    # The reporter is chosen explicitly (every process also gets the sink's Zipkin URL);
    # the rest is OTEL_* only: the benchmark sets OTEL_EXPORTER_OTLP_ENDPOINT to the sink.
    'traced_otlp': {'FALCON_TRACING_REPORTER': 'otlp'},
    # The same span content as Zipkin's (OpenTracing's HTTP names): the format's own cost.
    'traced_otlp_old_names': {'FALCON_TRACING_REPORTER': 'otlp',
                              'FALCON_TRACING_HTTP_SEMCONV': 'old'},
    'traced_otlp_json': {'FALCON_TRACING_REPORTER': 'otlp',
                         'OTEL_EXPORTER_OTLP_PROTOCOL': 'http/json'},
    'unsampled': {'FALCON_TRACING_SAMPLE_RATE': '0'},
    'excluded': {'FALCON_TRACING_EXCLUDE': 'GET /hello,GET /users/*'},
    'traced_noexport': {'FALCON_TRACING_REPORTER': 'none'},
    'span_only': {'FALCON_TRACING_SAMPLE_RATE': '1', 'FALCON_TRACING_REPORTER': 'none'},
    'core_noexport': {'FALCON_TRACING_SAMPLE_RATE': '1', 'FALCON_TRACING_REPORTER': 'none'},
    'traced_encode': {'FALCON_TRACING_SAMPLE_RATE': '1', 'FALCON_TRACING_REPORTER': 'none'},
    'traced_discard': {'FALCON_TRACING_SAMPLE_RATE': '1', 'FALCON_TRACING_REPORTER': 'none'},
    'unsampled_plain': {'FALCON_TRACING_SAMPLE_RATE': '0'},
    'excluded_plain': {'FALCON_TRACING_EXCLUDE': 'GET /hello,GET /users/*'},
    'unsampled_rate': {'FALCON_TRACING_SAMPLE_RATE': '1e-9'},
    'unsampled_health_rule': {'FALCON_TRACING_SAMPLE_RATE': '0',
                              'FALCON_TRACING_EXCLUDE': 'GET /health'},
}

Finish = Callable[[float], Optional[int]]


class HelloResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {'message': 'hello'}


class UserResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        resp.media = {'user_id': user_id}


def make_app() -> falcon.App:
    app = falcon.App()
    app.add_route('/hello', HelloResource())
    app.add_route('/users/{user_id}', UserResource())
    return app


def _no_export(timeout: float) -> Optional[int]:
    return None


def build(variant: str) -> tuple[Callable[..., Any], Finish]:
    """The WSGI app for ``variant`` and its ``finish(timeout)`` (see the module docstring)."""
    app = make_app()
    if variant == 'bare':
        return app, _no_export
    if variant in ('traced', 'unsampled', 'excluded', 'traced_noexport',
                   'unsampled_health_rule', 'unsampled_rate') + OTLP_VARIANTS:
        import opentracing

        from falcon_tracing_wsgi import wrap
        wrapped = wrap(app)
        tracer = opentracing.global_tracer()
        reporter = tracer.reporter  # type: ignore[attr-defined]

        def finish(timeout: float) -> Optional[int]:
            # Spans dropped or failed show up as lost: the sink gets fewer than requests.
            reporter.flush(timeout)
            return int(reporter.stats()['sent'])
        return wrapped, finish
    if variant == 'noop':
        import opentracing

        from falcon_tracing_wsgi import TracingMiddleware
        return TracingMiddleware(app, tracer=opentracing.Tracer()), _no_export
    if variant in OTEL_VARIANTS or variant == 'otel_otlp':
        return _build_otel(app, variant)
    if variant == 'traced_children':
        return _build_children()
    if variant in _FLOOR_KINDS:
        return _build_floor(app, _FLOOR_KINDS[variant])
    if variant in EXTRA_VARIANTS:
        return _build_stage(app, variant)
    raise ValueError(f'unknown variant {variant!r}; choose from '
                     f'{", ".join([*VARIANTS, *EXTRA_VARIANTS])}')


#: The floor yardsticks' variants and their wrap_floor kinds.
_FLOOR_KINDS = {'floor': 'floor', 'floor_kept': 'kept', 'floor_complete': 'complete',
                'floor_unsampled': 'complete', 'floor_excluded': 'complete'}


def _build_floor(app: falcon.App[Any, Any], kind: str
                 ) -> tuple[Callable[..., Any], Finish]:
    """The floor yardstick (``floor.py``) with the reporter ``wrap()`` would build."""
    from floor import wrap_floor

    from falcon_tracing_wsgi.bootstrap import build_tracer
    from falcon_tracing_wsgi.config import TracingConfig

    tracer: Any = build_tracer(TracingConfig.from_env())
    reporter = tracer.reporter

    def finish(timeout: float) -> Optional[int]:
        reporter.flush(timeout)
        return int(reporter.stats()['sent'])
    return wrap_floor(app, tracer, kind), finish


def _plain(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` behind a plain function, which the wrapper does not recognise as Falcon."""
    def plain(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return app(environ, start_response)
    return plain


def _build_stage(app: falcon.App[Any, Any], variant: str) -> tuple[Callable[..., Any], Finish]:
    """The breakdown's stages (``EXTRA_VARIANTS``): the package's pieces wired by hand.

    The reporters are built from the package's public classes the way ``bootstrap``
    builds the Zipkin one, except the local endpoint's address (fixed here).
    """
    import opentracing

    from falcon_tracing_wsgi import TracingMiddleware
    from falcon_tracing_wsgi.bootstrap import build_tracer
    from falcon_tracing_wsgi.config import TracingConfig
    from falcon_tracing_wsgi.zipkin import BatchReporter, Endpoint, JsonV2Encoder

    config = TracingConfig.from_env()
    if variant == 'bare_plain':
        return _plain(app), _no_export
    if variant in ('span_only', 'core_noexport', 'unsampled_plain', 'excluded_plain'):
        tracer = build_tracer(config)
        opentracing.set_global_tracer(tracer)
        if variant != 'span_only':
            return TracingMiddleware(_plain(app), config=config), _no_export
        start_span = tracer.start_span

        def span_only(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            span = start_span(environ['REQUEST_METHOD'], tags={'span.kind': 'server'},
                              ignore_active_span=True)
            try:
                return app(environ, start_response)
            finally:
                span.finish()
        return span_only, _no_export
    encoder = JsonV2Encoder(Endpoint(config.service_name, ipv4='127.0.0.1'),
                            process_tags=dict(config.tags))
    reporter: Any
    if variant == 'traced_encode':
        reporter = _EncodingReporter(encoder.encode)
    else:
        reporter = BatchReporter(_DiscardingSender(), encoder,
                                 max_queue_size=config.queue_size,
                                 batch_size=config.batch_size,
                                 flush_interval=config.flush_interval,
                                 max_retries=config.max_retries,
                                 shutdown_timeout=config.shutdown_timeout)
    opentracing.set_global_tracer(build_tracer(config, reporter))

    def finish(timeout: float) -> Optional[int]:
        reporter.flush(timeout)
        return int(reporter.stats()['sent'])
    return TracingMiddleware(app, config=config), finish


class _EncodingReporter:
    """Encodes each span as it is reported, on the request thread, and keeps nothing."""

    def __init__(self, encode: Callable[[Any], Optional[str]]) -> None:
        self._encode = encode
        self._encoded = 0

    def report(self, span: Any) -> None:
        if self._encode(span) is not None:
            self._encoded += 1

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        return True

    def stats(self) -> dict[str, int]:
        return {'sent': self._encoded}


class _DiscardingSender:
    """A sender that counts the spans of each body and drops it (no I/O)."""

    def __init__(self) -> None:
        self.spans = 0

    def send(self, body: bytes, span_count: int, timeout: Optional[float] = None) -> None:
        self.spans += span_count

    def close(self) -> None:
        pass


def _build_otel(app: falcon.App, variant: str) -> tuple[Callable[..., Any], Finish]:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SpanExporter,
                                                SpanExportResult)
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class CountingExporter(SpanExporter):
        """Discards spans, counting them."""

        def __init__(self) -> None:
            self.count = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.count += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exporter: Any
    if variant == 'otel':
        exporter = CountingExporter()
    elif variant == 'otel_otlp':
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = _counting(OTLPSpanExporter)(endpoint=os.environ['BENCH_SINK_OTLP_URL'])
    else:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        exporter = _counting(ZipkinExporter)(endpoint=os.environ['BENCH_SINK_URL'])
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(exporter))

    def finish(timeout: float) -> Optional[int]:
        provider.force_flush(int(timeout * 1000))
        return exporter.count  # type: ignore[no-any-return]
    return OpenTelemetryMiddleware(app, tracer_provider=provider), finish


def _counting(exporter_class: type) -> type:
    """A subclass of a real OpenTelemetry exporter counting what the collector accepted."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    class Counting(exporter_class):  # type: ignore[misc]
        count = 0

        def export(self, spans: Any) -> SpanExportResult:
            result: SpanExportResult = super().export(spans)
            if result is SpanExportResult.SUCCESS:
                self.count += len(spans)
            return result

    Counting.__name__ = Counting.__qualname__ = f'Counting{exporter_class.__name__}'
    return Counting


#: Child spans each request of ``traced_children`` makes (issue 12's "30 child spans").
CHILD_SPANS = 30


class _WithChildSpans:
    """Makes :data:`CHILD_SPANS` child spans (an app tracing its database calls), then
    answers as the resource it wraps."""

    def __init__(self, resource: Any) -> None:
        self.resource = resource

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        import opentracing

        # The global tracer at request time: gunicorn's hooks may install a new one after
        # the app was built.
        start_active_span = opentracing.global_tracer().start_active_span
        for index in range(CHILD_SPANS):
            with start_active_span('db.query') as scope:
                scope.span.set_tag('db.statement', 'SELECT 1')
                scope.span.set_tag('db.row', index)
        self.resource.on_get(req, resp, **params)


def make_children_app() -> falcon.App:
    """:func:`make_app`'s routes, each request also making :data:`CHILD_SPANS` child spans."""
    app = falcon.App()
    app.add_route('/hello', _WithChildSpans(HelloResource()))
    app.add_route('/users/{user_id}', _WithChildSpans(UserResource()))
    return app


def _build_children() -> tuple[Callable[..., Any], Finish]:
    """``traced_children``: ``wrap()`` of :func:`make_children_app` at default settings."""
    import opentracing

    from falcon_tracing_wsgi import wrap
    wrapped = wrap(make_children_app())

    def finish(timeout: float) -> Optional[int]:
        reporter = opentracing.global_tracer().reporter  # type: ignore[attr-defined]
        reporter.flush(timeout)
        return int(reporter.stats()['sent'])
    return wrapped, finish


def _gunicorn_app() -> Callable[..., Any]:
    wsgi, finish = build(os.environ.get('BENCH_VARIANT', 'bare'))
    return wsgi


if os.environ.get('BENCH_GUNICORN'):
    app = _gunicorn_app()
