"""The gunicorn hooks, unit level: small fake server/worker objects, real tracer and reporter."""

from __future__ import annotations

import json
import os

import opentracing
import pytest
from gunicorn.app.base import Application
from gunicorn.config import Config
from opentracing.mocktracer import MockTracer

from falcon_tracing_wsgi import ConfigError, bootstrap, wrap
from falcon_tracing_wsgi import gunicorn as hooks
from falcon_tracing_wsgi.demo.processes import free_port
from falcon_tracing_wsgi.middleware import TracingMiddleware
from falcon_tracing_wsgi.tracer.tracer import Tracer

from . import apps
from .harness import call, make_environ

HOOKS = ('post_fork', 'post_worker_init', 'worker_exit', 'worker_abort', 'on_exit')


class FakeLog:
    """gunicorn's logger interface, keeping (level, message) pairs."""

    def __init__(self):
        self.lines = []

    def _add(self, level, message, *args, **kwargs):
        self.lines.append((level, message % args if args else message))

    def debug(self, message, *args, **kwargs):
        self._add('debug', message, *args)

    def info(self, message, *args, **kwargs):
        self._add('info', message, *args)

    def warning(self, message, *args, **kwargs):
        self._add('warning', message, *args)

    def visible(self):
        return [(level, text) for level, text in self.lines if level != 'debug']


class FakeWorker:
    def __init__(self, pid=None, age=3):
        self.pid = os.getpid() if pid is None else pid
        self.age = age
        self.log = FakeLog()


class FakeServer:
    def __init__(self):
        self.log = FakeLog()


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    """Each test starts like a new worker: no wrap() has run, no abort happened."""
    # NOTE: bootstrap keeps the config of its last install() in a module global;
    # monkeypatch puts the previous value back after the test.
    monkeypatch.setattr(bootstrap, '_installed', None)
    monkeypatch.setattr(hooks, '_aborted', False)
    yield
    tracer = opentracing.global_tracer()
    if isinstance(tracer, Tracer):
        tracer.close(1.0)


@pytest.fixture
def span_file(tmp_path, monkeypatch):
    """Route the reporter to a JSON-lines file; returns a reader of the spans in it."""
    path = tmp_path / 'spans.jsonl'
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'log')
    monkeypatch.setenv('FALCON_TRACING_LOG_FILE', str(path))
    monkeypatch.setenv('FALCON_TRACING_FLUSH_INTERVAL', '3600')  # only the hooks send

    def spans():
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    spans.path = path
    return spans


def worker_tags(worker):
    return {(hooks.TAG_WORKER_PID, str(worker.pid)), (hooks.TAG_WORKER_AGE, str(worker.age))}


def traced_spans(count):
    tracer = opentracing.global_tracer()
    for index in range(count):
        with tracer.start_active_span(f'work-{index}'):
            pass


def unfinished_request():
    """A request whose response the server has not closed yet (the span is in flight)."""
    outcome = call(TracingMiddleware(apps.generator_body), make_environ('/slow'),
                   iterate=False, close=False)
    return outcome.result


# --------------------------------------------------------------------------- post_fork

def test_post_fork_before_wrap_builds_from_the_environment(monkeypatch):
    """Without --preload nothing is installed yet: the environment decides."""
    monkeypatch.setenv('FALCON_TRACING_SERVICE_NAME', 'users')
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'none')
    worker = FakeWorker(age=7)
    hooks.post_fork(FakeServer(), worker)
    config = bootstrap.installed_config()
    assert config.service_name == 'users'
    assert set(config.tags) == worker_tags(worker)
    assert isinstance(opentracing.global_tracer(), Tracer)


def test_post_fork_after_wrap_keeps_its_options_and_builds_a_new_tracer(monkeypatch):
    """With --preload wrap() ran in the master: its keyword options survive the fork."""
    monkeypatch.setenv('FALCON_TRACING_SERVICE_NAME', 'from-env')
    wrap(apps.list_body, service_name='from-wrap', reporter='none', tags=['env=prod'])
    master_tracer = opentracing.global_tracer()
    worker = FakeWorker()
    hooks.post_fork(FakeServer(), worker)
    config = bootstrap.installed_config()
    assert config.service_name == 'from-wrap'
    assert set(config.tags) == {('env', 'prod')} | worker_tags(worker)
    assert opentracing.global_tracer() is not master_tracer


def test_post_fork_replaces_the_tags_of_an_earlier_worker():
    """A config that already names a worker gets this worker's tags, not both."""
    bootstrap.install(bootstrap.TracingConfig(
        reporter='none', tags=(('env', 'prod'), (hooks.TAG_WORKER_PID, '1'),
                               (hooks.TAG_WORKER_AGE, '1'))))
    worker = FakeWorker(age=2)
    hooks.post_fork(FakeServer(), worker)
    assert set(bootstrap.installed_config().tags) == {('env', 'prod')} | worker_tags(worker)


@pytest.mark.parametrize('setup', [
    pytest.param('disabled', id='tracing-disabled'),
    pytest.param('foreign', id='another-tracer-installed'),
])
def test_post_fork_leaves_the_global_tracer_alone(monkeypatch, setup):
    if setup == 'disabled':
        monkeypatch.setenv('FALCON_TRACING_ENABLED', 'false')
    else:
        opentracing.set_global_tracer(MockTracer())
    before = opentracing.global_tracer()
    hooks.post_fork(FakeServer(), FakeWorker())
    assert opentracing.global_tracer() is before
    assert bootstrap.installed_config() is None


def test_post_fork_stops_the_worker_on_an_invalid_variable(monkeypatch):
    """Like wrap(): a bad value must stop the boot with a message naming the variable."""
    monkeypatch.setenv('FALCON_TRACING_SAMPLE_RATE', 'lots')
    with pytest.raises(ConfigError, match='FALCON_TRACING_SAMPLE_RATE'):
        hooks.post_fork(FakeServer(), FakeWorker())


def test_post_fork_logs_and_goes_on_when_installing_fails(monkeypatch):
    def broken(config):
        raise RuntimeError('boom')
    monkeypatch.setattr(bootstrap, 'install', broken)
    server = FakeServer()
    hooks.post_fork(server, FakeWorker())
    assert [level for level, _ in server.log.visible()] == ['warning']


# --------------------------------------------------------------------------- post_worker_init

def test_post_worker_init_puts_back_the_tags_wrap_replaced(monkeypatch):
    """No --preload: post_fork, then the app's wrap() in the worker, then this hook."""
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'none')
    worker = FakeWorker()
    hooks.post_fork(FakeServer(), worker)
    wrap(apps.list_body, service_name='late')
    assert not worker_tags(worker) <= set(bootstrap.installed_config().tags)
    hooks.post_worker_init(worker)
    config = bootstrap.installed_config()
    assert config.service_name == 'late'
    assert worker_tags(worker) <= set(config.tags)


def test_post_worker_init_keeps_the_tracer_post_fork_installed(monkeypatch):
    """--preload: post_fork already tagged the tracer; nothing is rebuilt."""
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'none')
    worker = FakeWorker()
    hooks.post_fork(FakeServer(), worker)
    tracer = opentracing.global_tracer()
    hooks.post_worker_init(worker)
    assert opentracing.global_tracer() is tracer


# --------------------------------------------------------------------------- worker_exit

def test_worker_exit_sends_everything_and_logs_one_summary_line(span_file):
    worker = FakeWorker(age=4)
    server = FakeServer()
    hooks.post_fork(server, worker)
    traced_spans(3)
    assert span_file() == []  # the flush interval is an hour: only the hook sends
    hooks.worker_exit(server, worker)
    assert sorted(span['name'] for span in span_file()) == ['work-0', 'work-1', 'work-2']
    assert opentracing.global_tracer().reporter.closed
    (line,) = server.log.visible()
    assert line[0] == 'info'
    assert f'worker {worker.pid} (age 4) exit: zipkin to {span_file.path}: 3 spans sent, ' \
           f'0 dropped, 0 failed in ' in line[1]


@pytest.mark.parametrize('env,destination', [
    pytest.param({'FALCON_TRACING_REPORTER': 'xray',
                  'FALCON_TRACING_XRAY_DAEMON_ADDRESS': '127.0.0.1:2999'},
                 'xray to udp://127.0.0.1:2999', id='xray'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://127.0.0.1:9/api/v2/spans?token=s3cret',
                  'FALCON_TRACING_MAX_RETRIES': '0'},
                 'zipkin to http://127.0.0.1:9/api/v2/spans', id='zipkin'),
])
def test_one_summary_line_per_process_names_the_format_and_destination(
        monkeypatch, caplog, env, destination):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv('FALCON_TRACING_FLUSH_INTERVAL', '3600')
    worker = FakeWorker()
    server = FakeServer()
    hooks.post_fork(server, worker)
    traced_spans(1)
    caplog.set_level('INFO', logger='falcon_tracing_wsgi')
    hooks.worker_exit(server, worker)
    (line,) = server.log.visible()
    assert f'exit: {destination}: ' in line[1]
    assert line[1].count(' sent, ') == 1
    assert 's3cret' not in line[1]
    assert [r.getMessage() for r in caplog.records if 'closed' in r.getMessage()] == []


def test_a_worker_that_never_booted_logs_no_summary(span_file):
    worker = FakeWorker()
    worker.booted = False
    server = FakeServer()
    hooks.post_fork(server, worker)
    hooks.worker_exit(server, worker)
    assert server.log.visible() == []


def test_worker_exit_in_the_master_does_nothing(span_file):
    """gunicorn calls worker_exit in the master for a worker that was already gone."""
    server = FakeServer()
    hooks.post_fork(server, FakeWorker())
    traced_spans(1)
    hooks.worker_exit(server, FakeWorker(pid=os.getpid() + 1))
    assert not opentracing.global_tracer().reporter.closed
    assert server.log.visible() == []


def test_worker_exit_finishes_requests_still_running(span_file):
    """A gthread worker past its graceful timeout: the running request gets a span."""
    worker = FakeWorker()
    server = FakeServer()
    hooks.post_fork(server, worker)
    response = unfinished_request()
    hooks.worker_exit(server, worker)
    (span,) = span_file()
    assert span['tags']['error'] == 'true'
    assert span['tags']['http.aborted.reason'] == hooks.EXIT_REASON
    assert [level for level, _ in server.log.visible()] == ['warning', 'info']
    response.close()  # the server's close comes too late to change anything
    assert len(span_file()) == 1


def test_worker_exit_summary_is_a_warning_when_spans_were_lost(monkeypatch):
    """An unreachable collector: the spans fail, and the summary line says so."""
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_URL', f'http://127.0.0.1:{free_port()}/api/v2/spans')
    monkeypatch.setenv('FALCON_TRACING_MAX_RETRIES', '0')
    monkeypatch.setenv('FALCON_TRACING_FLUSH_INTERVAL', '3600')
    worker = FakeWorker()
    server = FakeServer()
    hooks.post_fork(server, worker)
    traced_spans(2)
    hooks.worker_exit(server, worker)
    (line,) = server.log.visible()
    assert line[0] == 'warning'
    assert '0 spans sent, 0 dropped, 2 failed' in line[1]


def test_worker_exit_never_raises(monkeypatch):
    class BrokenReporter:
        def report(self, span):
            pass

        def flush(self, timeout):
            return True

        def close(self, timeout=None):
            return True

        def stats(self):
            raise RuntimeError('boom')

    config = bootstrap.TracingConfig(reporter='none')
    bootstrap.install(config)
    opentracing.set_global_tracer(bootstrap.build_tracer(config, reporter=BrokenReporter()))
    server = FakeServer()
    hooks.worker_exit(server, FakeWorker())
    assert server.log.visible() == [('warning', 'falcon-tracing-wsgi: worker_exit hook failed')]


class BridgeLike:
    """A tracer bootstrap may build for FALCON_TRACING_TRACER=otel: flush/close, no reporter."""

    def __init__(self, ok=True):
        self.ok = ok
        self.calls = []

    def flush(self, timeout=5.0):
        self.calls.append(('flush', timeout))
        return self.ok

    def close(self, timeout=5.0):
        self.calls.append(('close', timeout))
        return self.ok


@pytest.mark.parametrize('ok, level, text', [
    pytest.param(True, 'info', 'tracer closed in', id='all-sent'),
    pytest.param(False, 'warning', 'tracer closed (not everything was sent) in', id='not-all'),
])
def test_worker_exit_closes_another_tracer_bootstrap_installed(ok, level, text):
    bootstrap.install(bootstrap.TracingConfig(reporter='none', shutdown_timeout=2.5))
    bridge = BridgeLike(ok)
    opentracing.set_global_tracer(bridge)
    server = FakeServer()
    hooks.worker_exit(server, FakeWorker())
    assert bridge.calls == [('close', 2.5)]
    ((logged_level, line),) = server.log.visible()
    assert logged_level == level and text in line


def test_the_hooks_leave_a_foreign_tracer_alone():
    """Not installed by this package (no wrap()/install()): never flushed or closed."""
    bridge = BridgeLike()
    opentracing.set_global_tracer(bridge)
    server, worker = FakeServer(), FakeWorker()
    hooks.worker_abort(worker)
    hooks.worker_exit(server, worker)
    hooks.on_exit(server)
    assert bridge.calls == []


# --------------------------------------------------------------------------- worker_abort

def _blocked_in_the_app(worker):
    """The sync worker's case: the timeout fires while the app is still running."""
    def app(environ, start_response):
        hooks.worker_abort(worker)  # gunicorn's SIGABRT handler, then sys.exit(1)
        raise SystemExit(1)
    with pytest.raises(SystemExit):
        call(TracingMiddleware(app), make_environ('/slow'))


def _headers_not_sent(worker):
    response = unfinished_request()  # start_response called, nothing sent yet
    hooks.worker_abort(worker)
    response.close()


def _body_started(worker):
    response = unfinished_request()
    next(iter(response))  # the first chunk sends the headers: the client got a 200
    hooks.worker_abort(worker)
    response.close()


@pytest.mark.parametrize('request_state, status', [
    pytest.param(_blocked_in_the_app, None, id='blocked-in-the-app'),
    pytest.param(_headers_not_sent, None, id='headers-not-sent'),
    pytest.param(_body_started, '200', id='body-started'),
])
def test_worker_abort_finishes_the_timed_out_request_with_an_error_and_flushes(
        span_file, request_state, status):
    """The span says what happened (error, aborted) and a status only if one was sent."""
    worker = FakeWorker()
    hooks.post_fork(FakeServer(), worker)
    request_state(worker)
    (span,) = span_file()  # flushed by the hook itself, before the worker exits
    assert span['name'] == 'GET'
    assert span['tags']['error'] == 'true'
    assert span['tags']['http.aborted'] == 'true'
    assert span['tags'].get('http.status_code') == status
    assert span['tags']['http.aborted.reason'] == hooks.ABORT_REASON
    assert (hooks.TAG_WORKER_PID, str(worker.pid)) in span['tags'].items()
    (line,) = worker.log.visible()
    assert line[0] == 'warning' and '1 in-flight spans finished with error=true' in line[1]
    assert not opentracing.global_tracer().reporter.closed  # worker_exit closes it


def test_worker_abort_keeps_its_deadline_when_it_interrupts_the_reporter(span_file):
    """The SIGABRT handler runs on the main thread, which may be inside the reporter
    holding its lock (a request reporting its span): the hook must still return."""
    import time
    worker = FakeWorker()
    hooks.post_fork(FakeServer(), worker)
    traced_spans(2)
    reporter = opentracing.global_tracer().reporter
    with reporter._lock:  # the interrupted frame's lock (the reporter's own, private)
        started = time.monotonic()
        hooks.worker_abort(worker)
        elapsed = time.monotonic() - started
    assert elapsed < hooks._ABORT_FLUSH_TIMEOUT + 0.5
    (line,) = worker.log.visible()
    assert 'the flush did not complete in time' in line[1]


def test_worker_exit_after_an_abort_keeps_to_the_short_deadline(span_file, monkeypatch):
    worker = FakeWorker()
    server = FakeServer()
    hooks.post_fork(server, worker)
    hooks.worker_abort(worker)
    closes = []
    reporter = opentracing.global_tracer().reporter
    monkeypatch.setattr(reporter, 'close',
                        lambda timeout, **kwargs: closes.append(timeout) or True)
    hooks.worker_exit(server, worker)
    assert closes == [hooks._ABORT_FLUSH_TIMEOUT]


# --------------------------------------------------------------------------- on_exit

def test_on_exit_closes_the_masters_reporter(span_file):
    """--preload builds a tracer in the master; its spans are sent at shutdown."""
    wrap(apps.list_body)
    traced_spans(1)
    server = FakeServer()
    hooks.on_exit(server)
    assert [span['name'] for span in span_file()] == ['work-0']
    (line,) = server.log.visible()
    assert f'master {os.getpid()} exit: zipkin to {span_file.path}: 1 span sent, 0 dropped, ' \
           f'0 failed in ' in line[1]


def test_on_exit_without_our_tracer_logs_nothing():
    opentracing.set_global_tracer(MockTracer())
    server = FakeServer()
    hooks.on_exit(server)
    assert server.log.visible() == []


# --------------------------------------------------------------------------- as a config file

class _ConfigOnly(Application):
    def init(self, parser, opts, args):
        pass

    def load(self):
        raise AssertionError('not loaded in this test')


def test_gunicorn_reads_exactly_the_hooks_from_the_module():
    """``-c python:falcon_tracing_wsgi.gunicorn`` sets the five hooks and nothing else."""
    app = _ConfigOnly.__new__(_ConfigOnly)
    app.cfg = Config()
    app.load_config_from_module_name_or_filename('python:falcon_tracing_wsgi.gunicorn')
    default = Config()
    changed = {name for name in app.cfg.settings
               if app.cfg.settings[name].get() != default.settings[name].get()}
    assert changed == set(HOOKS)
    for name in HOOKS:
        assert app.cfg.settings[name].get() is getattr(hooks, name)
