"""Drive a WSGI app the way a server does, for the middleware tests."""

from __future__ import annotations

import wsgiref.util
from typing import Any


def make_environ(path: str = '/', method: str = 'GET', query: str = '',
                 headers: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A PEP 3333 environ with the given request line and headers."""
    environ: dict[str, Any] = {'REQUEST_METHOD': method, 'PATH_INFO': path,
                               'QUERY_STRING': query, 'SCRIPT_NAME': '', 'REMOTE_ADDR': '10.1.2.3',
                               'REMOTE_PORT': '50123'}
    wsgiref.util.setup_testing_defaults(environ)
    environ['wsgi.file_wrapper'] = wsgiref.util.FileWrapper
    for name, value in (headers or {}).items():
        key = name.upper().replace('-', '_')
        environ[key if key in ('CONTENT_TYPE', 'CONTENT_LENGTH') else 'HTTP_' + key] = value
    environ.update(extra)
    return environ


class Call:
    """The outcome of one request through a WSGI app, driven like a server would."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []
        self.body = b''
        self.result: Any = None

    def start_response(self, status, headers, exc_info=None):
        self.status = status
        self.headers = list(headers)
        return self.written.append


def call(app, environ=None, *, iterate=True, close=True) -> Call:
    """Run ``app`` like a WSGI server: call, iterate the body, close it."""
    outcome = Call()
    environ = environ if environ is not None else make_environ()
    outcome.result = result = app(environ, outcome.start_response)
    try:
        if iterate:
            outcome.body = b''.join(result)
    finally:
        if close and hasattr(result, 'close'):
            result.close()
    return outcome
