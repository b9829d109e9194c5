"""The zero-code entrypoint: FALCON_TRACING_APP names the app; mistakes name the variable."""

from __future__ import annotations

import sys
import textwrap

import pytest

import falcon_tracing_wsgi.entrypoint as entrypoint
from falcon_tracing_wsgi import ConfigError, TracingMiddleware
from falcon_tracing_wsgi.config import app_target
from falcon_tracing_wsgi.entrypoint import import_target, load_app

from . import apps
from .harness import call


@pytest.fixture(autouse=True)
def _quiet_reporter(monkeypatch):
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'none')


@pytest.fixture
def forget_built_app():
    """The module caches the app it built; tests that read ``entrypoint.app`` reset it."""
    yield
    for name in ('app', 'application'):
        vars(entrypoint).pop(name, None)


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """Write modules into a directory on sys.path, as a user's project would be."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(name, source):
        (tmp_path / f'{name}.py').write_text(textwrap.dedent(source))
        written.append(name)
    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.mark.parametrize('environ, expected', [
    pytest.param({}, None, id='unset'),
    pytest.param({'FALCON_TRACING_APP': '   '}, None, id='blank'),
    pytest.param({'FALCON_TRACING_APP': ' pkg.mod:app '}, 'pkg.mod:app', id='stripped'),
])
def test_app_target_reads_the_variable(environ, expected):
    assert app_target(environ) == expected


@pytest.mark.parametrize('spec, target', [
    pytest.param('tests.apps:list_body', apps.list_body, id='attribute'),
    pytest.param(' tests.apps : list_body ', apps.list_body, id='spaces'),
])
def test_import_target_finds_the_attribute(spec, target):
    assert import_target(spec) is target


@pytest.mark.parametrize('spec, status', [
    pytest.param("userapp:create('204 No Content')", '204 No Content', id='factory-arg'),
    pytest.param("userapp:create(status='202 Accepted')", '202 Accepted', id='factory-kwarg'),
    pytest.param('userapp:create()', '200 OK', id='factory-no-args'),
    pytest.param('userapp', '418 I am a teapot', id='module-means-application'),
])
def test_import_target_calls_factories(user_modules, spec, status):
    user_modules('userapp', '''
        from tests.apps import status_app
        def create(status='200 OK'):
            return status_app(status)
        application = status_app('418 I am a teapot')
    ''')
    assert call(import_target(spec)).status == status


@pytest.mark.parametrize('spec, message', [
    pytest.param(':app', 'expected "module:name"', id='no-module'),
    pytest.param('my-service:app', 'expected "module:name"', id='not-a-module-name'),
    pytest.param('tests.apps:list_body[0]', 'expected an attribute name or a call',
                 id='not-a-name'),
    pytest.param('tests.apps:status_app(OK)', 'factory arguments must be literals',
                 id='non-literal-argument'),
    pytest.param('tests.apps:status_app(**{})', '**kwargs is not supported', id='kwargs'),
    pytest.param('no_such_module_x1:app', "no module named 'no_such_module_x1'",
                 id='module-not-found'),
    pytest.param('tests.no_such_module:app', "no module named 'tests.no_such_module'",
                 id='submodule-not-found'),
    pytest.param('tests.apps:missing', "has no attribute 'missing'", id='attribute-missing'),
    pytest.param('tests.apps', "has no attribute 'application'", id='no-application'),
    pytest.param('tests.apps:OK', 'is str, not a WSGI callable', id='not-callable'),
    pytest.param('tests.apps:OK()', 'not callable, so it cannot be called',
                 id='factory-not-callable'),
    pytest.param("tests.apps:status_app('200 OK')()", 'expected an attribute name or a call',
                 id='nested-call'),
])
def test_import_target_errors_name_the_variable(spec, message):
    with pytest.raises(ConfigError) as raised:
        import_target(spec)
    text = str(raised.value)
    assert text.startswith(f'FALCON_TRACING_APP={spec!r}')
    assert message in text


def test_an_import_error_inside_the_app_is_chained(user_modules):
    """The module exists but its own import fails: say so, and keep the cause."""
    user_modules('needs_dependency', 'import no_such_dependency_x2\napp = None\n')
    with pytest.raises(ConfigError, match="importing 'needs_dependency' failed") as raised:
        import_target('needs_dependency:app')
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_other_exceptions_of_the_app_module_are_not_hidden(user_modules):
    user_modules('raises_at_import', 'raise RuntimeError("the app cannot start")\n')
    with pytest.raises(RuntimeError, match='the app cannot start'):
        import_target('raises_at_import:app')


def test_load_app_wraps_the_target(monkeypatch):
    monkeypatch.setenv('FALCON_TRACING_APP', 'tests.apps:list_body')
    app = load_app()
    assert isinstance(app, TracingMiddleware)
    assert app.app is apps.list_body
    assert call(app).body == b'hello world'


def test_load_app_without_the_variable_says_how_to_set_it():
    with pytest.raises(ConfigError, match='FALCON_TRACING_APP is not set') as raised:
        load_app()
    assert 'e.g. FALCON_TRACING_APP=myservice.wsgi:app' in str(raised.value)


def test_load_app_honours_tracing_disabled(monkeypatch):
    monkeypatch.setenv('FALCON_TRACING_ENABLED', 'false')
    assert load_app('tests.apps:list_body') is apps.list_body


def test_the_module_builds_app_once_on_first_read(monkeypatch, forget_built_app):
    """``gunicorn falcon_tracing_wsgi.entrypoint:app``: built on the first read, then kept."""
    assert 'app' not in vars(entrypoint)  # importing the module built nothing
    monkeypatch.setenv('FALCON_TRACING_APP', 'tests.apps:list_body')
    app = entrypoint.app
    assert isinstance(app, TracingMiddleware) and app.app is apps.list_body
    assert entrypoint.app is app
    assert entrypoint.application is app


def test_the_module_raises_the_config_error_on_read(forget_built_app):
    with pytest.raises(ConfigError, match='FALCON_TRACING_APP is not set'):
        entrypoint.app  # noqa: B018 - the attribute read is the test
    assert 'app' not in vars(entrypoint)


def test_other_module_attributes_are_still_missing():
    with pytest.raises(AttributeError, match='nothing_here'):
        entrypoint.nothing_here  # noqa: B018


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # 3.12+: fork with threads
def test_a_fork_while_another_thread_loads_the_app_leaves_the_child_able_to_load_it():
    import os
    import threading
    held, release = threading.Event(), threading.Event()

    def loading():  # what a thread inside the lazy load holds
        with entrypoint._lock:
            held.set()
            release.wait(10.0)

    thread = threading.Thread(target=loading, daemon=True)
    thread.start()
    assert held.wait(5.0)
    try:
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            os._exit(0 if entrypoint._lock.acquire(timeout=2.0) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join(5.0)
