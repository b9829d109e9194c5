"""The middleware's environ-level fast path for this package's own tracer gives exactly
what the OpenTracing-API path gives.

``TracingMiddleware`` drives a ``Tracer`` (exactly that class) through
``_environ_starter``; any other tracer, including a subclass of ``Tracer``, goes through
the plain OpenTracing calls. Each case runs the same request through both, with tracers
built from the same collaborators and reproducible ids, and compares everything the app
and the reporter see: the environ (injected headers, the headers moved to
``falcon_tracing_wsgi.incoming``, every other key), the span the app saw, and the
finished span's context, name and tags.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from opentracing import Format

from falcon_tracing_wsgi import TracingMiddleware
from falcon_tracing_wsgi._wsgi import environ_key
from falcon_tracing_wsgi.middleware import ENVIRON_INCOMING, ENVIRON_SPAN
from falcon_tracing_wsgi.propagation import build_propagator
from falcon_tracing_wsgi.tracer import ConstSampler, Tracer
from falcon_tracing_wsgi.tracer.ids import RandomIdGenerator, XRayIdGenerator
from falcon_tracing_wsgi.tracer.span import Span
from tests import apps
from tests.harness import call, make_environ
from tests.tracer.fakes import RecordingReporter, SequentialIds

TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
SPAN = '00f067aa0ba902b7'


class _PlainTracer(Tracer):
    """Our tracer under another class: the middleware must use the OpenTracing path."""


HEADERS = [
    pytest.param({}, id='no-context'),
    pytest.param({'X-B3-TraceId': TRACE, 'X-B3-SpanId': SPAN, 'X-B3-Sampled': '1'},
                 id='b3-multi'),
    pytest.param({'b3': f'{TRACE}-{SPAN}-0'}, id='b3-single-unsampled'),
    pytest.param({'b3': '0'}, id='b3-decision-only'),
    pytest.param({'traceparent': f'00-{TRACE}-{SPAN}-01', 'tracestate': 'vendor=x'},
                 id='w3c-with-state'),
    pytest.param({'traceparent': 'garbage', 'User-Agent': 'kept'}, id='w3c-malformed'),
    pytest.param({'baggage': 'user=alice,tier=gold'}, id='baggage-only'),
    pytest.param({'X-B3-TraceId': TRACE, 'X-B3-SpanId': SPAN, 'baggage': 'k=v',
                  'uber-trace-id': f'{TRACE}:{SPAN}:0:1'}, id='b3-baggage-stale-jaeger'),
    pytest.param({'X-Amzn-Trace-Id': f'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1'},
                 id='xray'),
    pytest.param({'traceparent': f'00-{TRACE}-{SPAN}-01',
                  'X-B3-TraceId': 'a' * 32, 'X-B3-SpanId': 'b' * 16}, id='two-traces'),
    pytest.param({'X-B3-TraceId': 'nothex', 'X-B3-SpanId': SPAN}, id='b3-invalid'),
    pytest.param({'traceparent': f'00-{TRACE}-{SPAN}-03'}, id='w3c-random-sampled'),
    pytest.param({'traceparent': f'00-{TRACE}-{SPAN}-02'}, id='w3c-random-unsampled'),
    pytest.param({'X-B3-TraceId': TRACE, 'X-B3-SpanId': SPAN,
                  'traceparent': f'00-{TRACE}-{SPAN}-02'}, id='b3-wins-w3c-random'),
]

FORMATS = [
    pytest.param(('b3', 'w3c', 'baggage'), id='default'),
    pytest.param(('w3c',), id='w3c'),
    pytest.param(('b3single', 'w3c'), id='b3single-w3c'),
    pytest.param(('xray', 'b3'), id='xray-b3'),
    pytest.param(('jaeger', 'b3'), id='jaeger-b3'),  # not exhaustive: both take the slow path
]


def _tracer(cls: type, formats: tuple[str, ...], sampled: bool,
            random_ids: bool = False) -> tuple[Tracer, Any]:
    reporter = RecordingReporter()
    ids = SequentialIds()
    if random_ids:
        # Claims the W3C random flag, so the fast path's templates must carry -02/-03.
        ids.random_trace_ids = True  # type: ignore[attr-defined]
    tracer = cls(reporter, ConstSampler(sampled), build_propagator(formats),
                 id_generator=ids)
    return tracer, reporter


def _run(cls: type, formats: tuple[str, ...], headers: dict[str, str],
         sampled: bool, random_ids: bool = False, scheme: str = 'old') -> dict[str, Any]:
    tracer, reporter = _tracer(cls, formats, sampled, random_ids)
    middleware = TracingMiddleware(apps.echo_environ, tracer, http_semconv=scheme)
    environ = make_environ('/p', query='a=1', headers=headers)
    outcome = call(middleware, environ)
    seen = {key: value for key, value in environ['test.app_environ'].items()
            if key not in ('wsgi.input', 'wsgi.errors')}  # new objects per request
    span = seen.pop(ENVIRON_SPAN)
    fast = not isinstance(middleware._bound[1], functools.partial)
    finished = [((s.context.trace_id, s.context.span_id, s.context.parent_id,
                  s.context.sampled, s.context.debug, s.context.baggage,
                  s.context.tracestate, s.context.extra, s.context.random_trace_id),
                 s.operation_name, s.tags) for s in reporter.spans]
    # The fast path's sampled span is a ServerSpan (its standard tags are fields, its
    # ``tags`` the same dict); what matters is that both record or both do not.
    return {'status': outcome.status, 'environ': seen, 'recording': isinstance(span, Span),
            'span_ids': (span.context.trace_id, span.context.span_id,
                         span.context.parent_id, span.context.sampled,
                         span.context.random_trace_id),
            'finished': finished, 'fast': fast}


@pytest.mark.parametrize('random_ids', [pytest.param(False, id='ids-not-random'),
                                        pytest.param(True, id='ids-random')])
@pytest.mark.parametrize('sampled', [pytest.param(True, id='sampled'),
                                     pytest.param(False, id='unsampled')])
@pytest.mark.parametrize('formats', FORMATS)
@pytest.mark.parametrize('headers', HEADERS)
def test_fast_path_matches_the_opentracing_path(headers, formats, sampled, random_ids):
    fast = _run(Tracer, formats, headers, sampled, random_ids)
    plain = _run(_PlainTracer, formats, headers, sampled, random_ids)
    assert plain.pop('fast') is False
    # Jaeger reads uberctx-* headers outside its fields: no fast path for it.
    assert fast.pop('fast') is ('jaeger' not in formats)
    assert fast == plain
    assert fast['status'] == '200 OK'
    # Reported exactly when the server span is sampled (an inbound decision wins).
    assert len(fast['finished']) == (1 if fast['span_ids'][3] else 0)


@pytest.mark.parametrize('scheme', ['stable', 'dup'])
@pytest.mark.parametrize('headers', HEADERS[:5])
def test_fast_path_matches_for_every_tag_naming_scheme(headers, scheme):
    fast = _run(Tracer, ('b3', 'w3c', 'baggage'), headers, True, scheme=scheme)
    plain = _run(_PlainTracer, ('b3', 'w3c', 'baggage'), headers, True, scheme=scheme)
    assert fast.pop('fast') is True and plain.pop('fast') is False
    assert fast == plain
    for _, _, tags in fast['finished']:
        assert tags['http.request.method'] == 'GET' and tags['url.path'] == '/p'


@pytest.mark.parametrize('headers, moved', [
    pytest.param({}, {}, id='new-trace'),
    pytest.param({'X-B3-TraceId': TRACE, 'X-B3-SpanId': SPAN, 'traceparent': 'stale'},
                 {'HTTP_X_B3_TRACEID': TRACE, 'HTTP_X_B3_SPANID': SPAN,
                  'HTTP_TRACEPARENT': 'stale'}, id='replaced-and-stale'),
    pytest.param({'uber-trace-id': f'{TRACE}:{SPAN}:0:1'},
                 {'HTTP_UBER_TRACE_ID': f'{TRACE}:{SPAN}:0:1'}, id='other-format'),
])
def test_fast_path_keeps_what_the_caller_sent(headers, moved):
    tracer, _ = _tracer(Tracer, ('b3', 'w3c', 'baggage'), True)
    environ = make_environ(headers=headers)
    call(TracingMiddleware(apps.echo_environ, tracer), environ)
    seen = environ['test.app_environ']
    assert seen[ENVIRON_INCOMING] == moved
    span = seen[ENVIRON_SPAN]
    assert seen['HTTP_X_B3_SPANID'] == span.context.span_id
    assert seen['HTTP_TRACEPARENT'] == f'00-{span.context.trace_id}-{span.context.span_id}-01'


class _FailingTwin:
    def inject(self, context: Any, carrier: Any) -> None:
        raise RuntimeError('inject bug')


class _BrokenInjectPropagator:
    """Extracts like the default formats; its environ-keyed twin fails to inject."""

    reads_only_fields = True

    def __init__(self) -> None:
        self._real = build_propagator(('b3', 'w3c'))
        self.fields = self._real.fields

    def extract(self, carrier: Any) -> Any:
        return self._real.extract(carrier)

    def inject(self, context: Any, carrier: Any) -> None:
        self._real.inject(context, carrier)

    def with_header_names(self, name: Any) -> _FailingTwin:
        return _FailingTwin()


def test_a_failing_injection_restores_the_incoming_headers():
    reporter = RecordingReporter()
    tracer = Tracer(reporter, ConstSampler(True), _BrokenInjectPropagator(),
                    id_generator=SequentialIds())
    environ = make_environ(headers={'X-B3-TraceId': TRACE, 'X-B3-SpanId': SPAN})
    outcome = call(TracingMiddleware(apps.echo_environ, tracer), environ)
    seen = environ['test.app_environ']
    assert outcome.status == '200 OK'
    assert (seen['HTTP_X_B3_TRACEID'], seen['HTTP_X_B3_SPANID']) == (TRACE, SPAN)
    assert seen[ENVIRON_INCOMING] == {}
    # The request is still traced, as a child of the caller.
    assert [s.context.parent_id for s in reporter.spans] == [SPAN]


@pytest.mark.parametrize('sampled, flags', [pytest.param(True, '03', id='sampled'),
                                            pytest.param(False, '02', id='unsampled')])
def test_fast_path_sets_the_random_flag_on_new_random_trace_ids(sampled, flags):
    tracer = Tracer(RecordingReporter(), ConstSampler(sampled), build_propagator(('w3c',)))
    middleware = TracingMiddleware(apps.echo_environ, tracer)
    for _ in range(2):  # the first request binds the templates, the second uses them
        environ = make_environ()
        call(middleware, environ)
        seen = environ['test.app_environ']
        context = seen[ENVIRON_SPAN].context
        assert seen['HTTP_TRACEPARENT'] == \
            f'00-{context.trace_id}-{context.span_id}-{flags}'


@pytest.mark.parametrize('headers, expected', [
    pytest.param((('HTTP_A', 0, '{0}'), ('HTTP_B', 1, '{1}')),
                 {'HTTP_A': 'T', 'HTTP_B': 'S'}, id='bare-ids'),
    pytest.param((('HTTP_C', 2, "it's \"1\"\n"),), {'HTTP_C': "it's \"1\"\n"},
                 id='constant-with-quotes'),
    pytest.param((('HTTP_D', 3, '00-{0}-{1}-01'),), {'HTTP_D': '00-T-S-01'}, id='template'),
    pytest.param((('HTTP_E', 3, '{{x}}{1}:{0}'),), {'HTTP_E': '{x}S:T'},
                 id='template-with-escaped-braces'),
    pytest.param((('HTTP_G', 3, 'it\'s "\\{0}\n{1}'),), {'HTTP_G': 'it\'s "\\T\nS'},
                 id='template-with-quotes-and-escapes'),
    pytest.param((('HTTP_F', 3, '{0!r}-{1:>3}'),), {'HTTP_F': "'T'-  S"},
                 id='template-with-conversion-kept-as-format'),
    pytest.param((), {}, id='no-headers'),
])
def test_new_trace_header_writer(headers, expected):
    from falcon_tracing_wsgi.middleware import _header_writer
    environ: dict[str, Any] = {}
    _header_writer(headers)(environ, 'T', 'S')
    assert environ == {**expected, ENVIRON_INCOMING: {}}


@pytest.mark.parametrize('generator', [
    pytest.param(lambda: RandomIdGenerator(True), id='random-128'),
    pytest.param(lambda: RandomIdGenerator(False), id='random-64'),
    pytest.param(XRayIdGenerator, id='xray-ids'),
])
@pytest.mark.parametrize('sampled', [pytest.param(True, id='sampled'),
                                     pytest.param(False, id='unsampled')])
@pytest.mark.parametrize('formats', FORMATS)
def test_new_trace_headers_with_the_packages_own_ids(generator, sampled, formats):
    # The package's generators draw one width, so the fast path picks a new trace's
    # header writers at bind time: what it writes must be what inject() writes.
    tracer = Tracer(RecordingReporter(), ConstSampler(sampled), build_propagator(formats),
                    id_generator=generator())
    middleware = TracingMiddleware(apps.echo_environ, tracer)
    for _ in range(3):  # the first request binds, the others reuse the writers
        environ = make_environ('/p')
        call(middleware, environ)
        seen = environ['test.app_environ']
        injected: dict[str, str] = {}
        tracer.inject(seen[ENVIRON_SPAN].context, Format.HTTP_HEADERS, injected)
        assert injected
        written = {key: value for key, value in seen.items()
                   if key.startswith('HTTP_') and key != 'HTTP_HOST'}
        assert written == {environ_key(name): value for name, value in injected.items()}
        assert seen[ENVIRON_INCOMING] == {}
