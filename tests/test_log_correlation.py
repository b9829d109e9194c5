"""TraceContextFilter and install_log_correlation, with MockTracer and hex-string contexts."""

from __future__ import annotations

import datetime
import logging
import threading
import types
from typing import Any, Optional

import opentracing
import pytest
from opentracing.mocktracer import MockTracer

from falcon_tracing_wsgi.log_correlation import TraceContextFilter, install_log_correlation
from falcon_tracing_wsgi.tracer.context import SpanContext


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _FixedTracer(opentracing.Tracer):
    """A tracer whose active span has a given context (or which fails on lookup)."""

    def __init__(self, context: Optional[opentracing.SpanContext], fail: bool = False) -> None:
        super().__init__()
        self._span = None if context is None else opentracing.Span(self, context)
        self._fail = fail

    @property
    def active_span(self) -> Optional[opentracing.Span]:
        if self._fail:
            raise RuntimeError('tracer bug')
        return self._span


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.makeLogRecord({'msg': 'hello', 'levelno': logging.INFO})
    record.__dict__.update(extra)
    return record


def _ids(trace_filter: TraceContextFilter, record: Optional[logging.LogRecord] = None
         ) -> tuple[str, str]:
    record = record or _record()
    assert trace_filter.filter(record) is True
    return record.trace_id, record.span_id


@pytest.fixture()
def logger() -> logging.Logger:
    # Built outside logging's registry: pytest attaches its capture handlers to every
    # registered non-propagating logger, and the global registry would leak between tests.
    log = logging.Logger('tests.log_correlation', logging.INFO)
    log.propagate = False
    return log


def _child_of(parent: logging.Logger) -> logging.Logger:
    child = logging.Logger(parent.name + '.child', logging.INFO)
    child.parent = parent
    return child


def test_mocktracer_ids_while_a_span_is_active():
    tracer = MockTracer()
    with tracer.start_active_span('outer') as scope:
        ids = _ids(TraceContextFilter(tracer=tracer))
    context = scope.span.context

    assert ids == ('%016x' % context.trace_id, '%016x' % context.span_id)


@pytest.mark.parametrize(('context', 'expected'), [
    pytest.param(SpanContext('463ac35c9f6413ad48485a3953bb6124', 'a2fb4a1d1a96d312'),
                 ('463ac35c9f6413ad48485a3953bb6124', 'a2fb4a1d1a96d312'), id='hex-128'),
    pytest.param(SpanContext('00f067aa0ba902b7', '00000000000000ff'),
                 ('00f067aa0ba902b7', '00000000000000ff'), id='hex-64-leading-zeros'),
    pytest.param(types.SimpleNamespace(trace_id='ABCDEF0123456789', span_id='0123456789ABCDEF'),
                 ('abcdef0123456789', '0123456789abcdef'), id='upper-case-string'),
    pytest.param(types.SimpleNamespace(trace_id=(1 << 127) + 10, span_id=255),
                 ('8000000000000000000000000000000a', '00000000000000ff'), id='int-128'),
    pytest.param(types.SimpleNamespace(trace_id=b'\x01\xab', span_id=b'\xff'),
                 ('01ab', 'ff'), id='bytes'),
    pytest.param(SpanContext(None, None, sampled=False), ('', ''), id='decision-only'),
    pytest.param(opentracing.SpanContext(), ('', ''), id='no-ids-at-all'),
    pytest.param(None, ('', ''), id='no-active-span'),
])
def test_ids_from_any_context(context, expected):
    assert _ids(TraceContextFilter(tracer=_FixedTracer(context))) == expected


@pytest.mark.parametrize(('tracer', 'default'), [
    pytest.param(MockTracer(), '-', id='no-span-custom-default'),
    pytest.param(opentracing.Tracer(), '', id='noop-tracer'),
    pytest.param(_FixedTracer(None, fail=True), '?', id='broken-tracer'),
])
def test_default_when_there_is_nothing_to_say(tracer, default):
    assert _ids(TraceContextFilter(tracer=tracer, default=default)) == (default, default)


def test_ids_already_on_the_record_are_kept():
    tracer = MockTracer()
    record = _record(trace_id='from-the-app-thread', span_id='1')
    with tracer.start_active_span('other'):
        assert _ids(TraceContextFilter(tracer=tracer), record) == ('from-the-app-thread', '1')


def test_global_tracer_is_looked_up_per_record():
    trace_filter = TraceContextFilter()  # built before the tracer is installed
    tracer = MockTracer()
    previous = opentracing.global_tracer()
    opentracing.set_global_tracer(tracer)
    try:
        with tracer.start_active_span('work') as scope:
            ids = _ids(trace_filter)
    finally:
        opentracing.set_global_tracer(previous)

    assert ids[1] == '%016x' % scope.span.context.span_id


def test_each_thread_sees_its_own_span():
    tracer = MockTracer()  # thread-local scopes
    trace_filter = TraceContextFilter(tracer=tracer)
    results: dict[str, tuple[str, str]] = {}
    worker_started = threading.Event()
    main_logged = threading.Event()

    def worker() -> None:
        results['worker-no-span'] = _ids(trace_filter)
        with tracer.start_active_span('worker') as scope:
            worker_started.set()
            assert main_logged.wait(5)
            results['worker'] = _ids(trace_filter)
            results['worker-expected'] = ('%016x' % scope.span.context.trace_id,
                                          '%016x' % scope.span.context.span_id)

    with tracer.start_active_span('main') as scope:
        thread = threading.Thread(target=worker)
        thread.start()
        assert worker_started.wait(5)
        results['main'] = _ids(trace_filter)  # while the worker's span is active too
        main_logged.set()
        thread.join(5)
        main_span = scope.span

    assert not thread.is_alive()
    assert results['worker-no-span'] == ('', '')
    assert results['worker'] == results['worker-expected']
    assert results['main'] == ('%016x' % main_span.context.trace_id,
                               '%016x' % main_span.context.span_id)
    assert results['main'] != results['worker']


def test_install_adds_the_filter_to_handlers_so_child_loggers_are_covered(logger):
    handler = _ListHandler()
    logger.addHandler(handler)
    tracer = MockTracer()

    installed = install_log_correlation(logger, tracer=tracer)
    install_log_correlation(logger, tracer=tracer)  # idempotent
    with tracer.start_active_span('work') as scope:
        _child_of(logger).info('from a child logger')
    logger.info('no span')

    child, parent = handler.records
    assert handler.filters == [installed]
    assert child.span_id == '%016x' % scope.span.context.span_id
    assert parent.trace_id == parent.span_id == ''


def test_install_defaults_to_the_root_logger():
    root = logging.getLogger()
    handler = _ListHandler()
    saved = root.handlers[:]
    root.handlers[:] = [handler]  # keep the filter off pytest's own handlers
    try:
        installed = install_log_correlation()
    finally:
        root.handlers[:] = saved

    assert handler.filters == [installed]


def test_install_warns_when_there_are_no_handlers(logger, caplog):
    with caplog.at_level(logging.WARNING, 'falcon_tracing_wsgi'):
        install_log_correlation(logger)

    assert 'has no handlers' in caplog.text


def test_format_string_can_use_the_ids(logger):
    handler = _ListHandler()
    handler.setFormatter(logging.Formatter('[%(trace_id)s/%(span_id)s] %(message)s'))
    logger.addHandler(handler)
    tracer = _FixedTracer(SpanContext('463ac35c9f6413ad', 'a2fb4a1d1a96d312'))
    install_log_correlation(logger, tracer=tracer)

    logger.info('hi')

    assert handler.format(handler.records[0]) == '[463ac35c9f6413ad/a2fb4a1d1a96d312] hi'


def test_gunicorn_access_log_recipe_prints_the_response_header():
    """The README recipe: %({x-trace-id}o)s prints a response header in gunicorn's log."""
    glogging = pytest.importorskip('gunicorn.glogging')
    config = pytest.importorskip('gunicorn.config')
    cfg = config.Config()
    cfg.set('accesslog', '-')
    cfg.set('access_log_format', '%(h)s "%(r)s" %(s)s trace=%({x-trace-id}o)s')
    gunicorn_log = glogging.Logger(cfg)
    handler = _ListHandler()
    saved = gunicorn_log.access_log.handlers[:]
    gunicorn_log.access_log.handlers[:] = [handler]
    response = types.SimpleNamespace(status='200 OK', sent=2,
                                     headers=[('X-Trace-Id', '463ac35c9f6413ad')])
    environ = {'REQUEST_METHOD': 'GET', 'RAW_URI': '/orders', 'SERVER_PROTOCOL': 'HTTP/1.1',
               'REMOTE_ADDR': '127.0.0.1'}
    try:
        gunicorn_log.access(response, types.SimpleNamespace(headers=[]), environ,
                            datetime.timedelta(milliseconds=3))
    finally:
        gunicorn_log.access_log.handlers[:] = saved

    (record,) = handler.records
    assert record.getMessage() == '127.0.0.1 "GET /orders HTTP/1.1" 200 trace=463ac35c9f6413ad'
