"""The zero-code entrypoint: trace an app without editing it.

::

    FALCON_TRACING_APP=myservice.wsgi:app gunicorn falcon_tracing_wsgi.entrypoint:app

``FALCON_TRACING_APP`` names the WSGI app the way gunicorn does:

* ``package.module:name`` - an attribute of the module;
* ``package.module:factory()`` - a function called with no arguments, or with literal
  arguments such as ``create_app('prod', debug=False)``;
* ``package.module`` alone means ``package.module:application``.

The app is imported and wrapped with :func:`~falcon_tracing_wsgi.wrap` (so every
``FALCON_TRACING_*`` variable applies) the first time ``app`` (or ``application``, so
``gunicorn falcon_tracing_wsgi.entrypoint`` works too) is read from this module, once
per process; importing the module itself does nothing. With ``--preload`` that happens
in the master, otherwise in each worker. Combine it with the gunicorn hooks::

    FALCON_TRACING_APP=myservice.wsgi:app \\
        gunicorn -c python:falcon_tracing_wsgi.gunicorn falcon_tracing_wsgi.entrypoint:app

When the variable is unset, names a module that cannot be found, or an attribute that
is missing or not callable, :class:`~falcon_tracing_wsgi.ConfigError` says so and names
``FALCON_TRACING_APP``, so the server stops at boot with that message. An exception
raised *by the app's own module* while it is imported is not hidden: it propagates
unchanged (an ``ImportError`` from inside the module is chained to the error).
"""

from __future__ import annotations

import ast
import importlib
import os
import threading
from typing import Any, Callable, Optional

from .bootstrap import wrap
from .config import APP_ENV, ConfigError, app_target

__all__ = ['load_app', 'import_target']

_EXAMPLE = f'e.g. {APP_ENV}=myservice.wsgi:app or {APP_ENV}="myservice.wsgi:create_app()"'
_LAZY_NAMES = ('app', 'application')
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A thread that was loading the app when another one forked does not exist in the
    # child; its lock would stay held there for ever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def import_target(spec: str) -> Callable[..., Any]:
    """Import the WSGI app named by ``spec`` (``module[:name]`` or ``module:factory(...)``).

    Raises:
        ConfigError: ``spec`` is malformed, its module cannot be found (or failed with
            an ``ImportError``), or the name is missing or not callable. The message
            names ``FALCON_TRACING_APP``.
    """
    module_name, _, expression = spec.strip().partition(':')
    module_name = module_name.strip()
    expression = expression.strip() or 'application'
    if not module_name or not all(part.isidentifier() for part in module_name.split('.')):
        raise ConfigError(f'{APP_ENV}={spec!r} is not valid: expected "module:name" or '
                          f'"module:factory()", {_EXAMPLE}')
    name, args, kwargs = _parse_expression(spec, expression)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, 'name', None)
        if missing and (module_name == missing or module_name.startswith(missing + '.')):
            raise ConfigError(f'{APP_ENV}={spec!r} is not valid: no module named '
                              f'{missing!r} (is the project on sys.path? gunicorn adds the '
                              'directory it is started in, or --chdir)') from None
        raise ConfigError(f'{APP_ENV}={spec!r}: importing {module_name!r} failed: '
                          f'{exc}') from exc
    try:
        target = getattr(module, name)
    except AttributeError:
        raise ConfigError(f'{APP_ENV}={spec!r} is not valid: module {module_name!r} has '
                          f'no attribute {name!r}') from None
    if args is not None:
        if not callable(target):
            raise ConfigError(f'{APP_ENV}={spec!r} is not valid: {module_name}.{name} is '
                              f'not callable, so it cannot be called as a factory')
        target = target(*args, **kwargs)
    if not callable(target):
        raise ConfigError(f'{APP_ENV}={spec!r} is not valid: {module_name}:{expression} '
                          f'is {type(target).__name__}, not a WSGI callable')
    return target  # type: ignore[no-any-return]


def _parse_expression(spec: str, expression: str) -> tuple[str, Optional[list[Any]],
                                                           dict[str, Any]]:
    """``name`` -> (name, None, {}); ``factory(1, x='y')`` -> (factory, [1], {'x': 'y'})."""
    try:
        node = ast.parse(expression, mode='eval').body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Name):
        return node.id, None, {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords
                      if kw.arg is not None}
        except ValueError:
            raise ConfigError(f'{APP_ENV}={spec!r} is not valid: factory arguments must be '
                              'literals (strings, numbers, True/False/None, lists, '
                              'dicts)') from None
        if len(kwargs) != len(node.keywords):
            raise ConfigError(f'{APP_ENV}={spec!r} is not valid: **kwargs is not supported')
        return node.func.id, args, kwargs
    raise ConfigError(f'{APP_ENV}={spec!r} is not valid: after ":" expected an attribute '
                      f'name or a call such as create_app(), {_EXAMPLE}')


def load_app(target: Optional[str] = None, **options: Any) -> Callable[..., Any]:
    """Import the app named by ``target`` (default: ``FALCON_TRACING_APP``) and wrap it.

    Args:
        target: ``module:name`` or ``module:factory()``; read from the environment
            when omitted.
        **options: passed to :func:`~falcon_tracing_wsgi.wrap`.

    Raises:
        ConfigError: the variable is unset or names no usable app, or a tracing
            setting is invalid.
    """
    if target is None:
        target = app_target()
        if target is None:
            raise ConfigError(f'{APP_ENV} is not set: falcon_tracing_wsgi.entrypoint needs '
                              f'the app to trace, {_EXAMPLE}')
    return wrap(import_target(target), **options)


def __getattr__(name: str) -> Any:
    # PEP 562: the app is built when the server first reads it, never at import time
    # (importing this module must not import the user's app or read the environment).
    if name not in _LAZY_NAMES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    with _lock:
        built = globals().get(name)
        if built is None:
            built = load_app()
            # Both names refer to the same wrapped app; later reads skip this function.
            globals().update(dict.fromkeys(_LAZY_NAMES, built))
    return built
