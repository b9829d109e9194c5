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
    'bare': 'bare Falcon app (the floor)',
    'traced': 'wrap(): sampled, Zipkin v2 export to the sink',
    'traced_otlp': 'wrap(): sampled, OTLP/HTTP protobuf export to the sink',
    'traced_otlp_json': 'wrap(): sampled, OTLP/HTTP JSON export to the sink',
    'unsampled': 'wrap() with FALCON_TRACING_SAMPLE_RATE=0',
    'excluded': 'wrap(), request path excluded (FALCON_TRACING_EXCLUDE)',
    'traced_noexport': 'wrap(): sampled, FALCON_TRACING_REPORTER=none (diagnostic)',
    'noop': 'TracingMiddleware with opentracing.Tracer() (no-op)',
    'otel': 'OpenTelemetry WSGI middleware + SDK + BatchSpanProcessor, discarding exporter',
    'otel_zipkin': 'OpenTelemetry as above, ZipkinExporter (JSON v2) to the sink',
}
OTEL_VARIANTS = ('otel', 'otel_zipkin')
#: Variants whose process also gets OTEL_EXPORTER_OTLP_ENDPOINT (the sink's base URL).
OTLP_VARIANTS = ('traced_otlp', 'traced_otlp_json')
#: Settings each variant's process gets on top of FALCON_TRACING_SERVICE_NAME and
#: FALCON_TRACING_ZIPKIN_URL (the sink).
VARIANT_ENV = {
    'traced': {'FALCON_TRACING_SAMPLE_RATE': '1'},
    # The reporter is chosen explicitly (every process also gets the sink's Zipkin URL);
    # the rest is OTEL_* only: the benchmark sets OTEL_EXPORTER_OTLP_ENDPOINT to the sink.
    'traced_otlp': {'FALCON_TRACING_REPORTER': 'otlp'},
    'traced_otlp_json': {'FALCON_TRACING_REPORTER': 'otlp',
                         'OTEL_EXPORTER_OTLP_PROTOCOL': 'http/json'},
    'unsampled': {'FALCON_TRACING_SAMPLE_RATE': '0'},
    'excluded': {'FALCON_TRACING_EXCLUDE': 'GET /hello,GET /users/*'},
    'traced_noexport': {'FALCON_TRACING_REPORTER': 'none'},
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
    if variant in ('traced', 'unsampled', 'excluded', 'traced_noexport') + OTLP_VARIANTS:
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
    if variant in OTEL_VARIANTS:
        return _build_otel(app, variant)
    raise ValueError(f'unknown variant {variant!r}; choose from {", ".join(VARIANTS)}')


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
    else:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        class CountingZipkinExporter(ZipkinExporter):  # type: ignore[misc]
            """The real Zipkin JSON exporter, counting what the collector accepted."""

            count = 0

            def export(self, spans: Any) -> SpanExportResult:
                result = super().export(spans)
                if result is SpanExportResult.SUCCESS:
                    self.count += len(spans)
                return result

        exporter = CountingZipkinExporter(endpoint=os.environ['BENCH_SINK_URL'])
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(exporter))

    def finish(timeout: float) -> Optional[int]:
        provider.force_flush(int(timeout * 1000))
        return exporter.count  # type: ignore[no-any-return]
    return OpenTelemetryMiddleware(app, tracer_provider=provider), finish


def _gunicorn_app() -> Callable[..., Any]:
    wsgi, finish = build(os.environ.get('BENCH_VARIANT', 'bare'))
    return wsgi


if os.environ.get('BENCH_GUNICORN'):
    app = _gunicorn_app()
