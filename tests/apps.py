"""A catalogue of toy WSGI apps, one per response shape the middleware must handle.

Each app takes ``(environ, start_response)``. Apps that observe the active span read the
tracer from ``environ['test.tracer']`` and append what they saw to ``environ['test.seen']``
(a list the test provides), so tests can assert on what app code saw while it ran.
"""

from __future__ import annotations

import io
import sys
import weakref
from typing import Any

OK = '200 OK'
TEXT = [('Content-Type', 'text/plain')]


class AppError(Exception):
    """The exception the toy apps raise."""


def _see(environ: dict[str, Any], label: str) -> None:
    tracer = environ.get('test.tracer')
    seen = environ.get('test.seen')
    if tracer is not None and seen is not None:
        seen.append((label, tracer.active_span))


def list_body(environ, start_response):
    _see(environ, 'app')
    start_response(OK, TEXT)
    return [b'hello ', b'world']


def empty_body(environ, start_response):
    start_response('204 No Content', [])
    return []


def generator_body(environ, start_response):
    _see(environ, 'app')
    start_response(OK, TEXT)

    def chunks():
        for number in range(3):
            _see(environ, f'chunk{number}')
            yield b'chunk%d ' % number
    return chunks()


class ClosingIterator:
    """An iterable with a close() counter, like a file or a framework's stream."""

    def __init__(self, environ, chunks=(b'a', b'b', b'c')):
        self.environ = environ
        self.chunks = list(chunks)
        self.closed = 0
        environ['test.iterables'] = environ.get('test.iterables', []) + [self]

    def __iter__(self):
        return self

    def __next__(self):
        if not self.chunks:
            raise StopIteration
        return self.chunks.pop(0)

    def close(self):
        _see(self.environ, 'close')
        self.closed += 1


def closing_body(environ, start_response):
    start_response(OK, TEXT)
    return ClosingIterator(environ)


def raise_before_start_response(environ, start_response):
    raise AppError('before start_response')


def raise_after_start_response(environ, start_response):
    start_response(OK, TEXT)
    raise AppError('after start_response')


def raise_mid_body(environ, start_response):
    start_response(OK, TEXT)

    def chunks():
        yield b'first'
        raise AppError('mid body')
    return chunks()


def exc_info_app(environ, start_response):
    try:
        raise AppError('handled by the app')
    except AppError:
        start_response('500 Internal Server Error', TEXT, sys.exc_info())
    return [b'sorry']


def write_app(environ, start_response):
    write = start_response(OK, TEXT)
    write(b'written ')
    write(b'directly')
    return []


def file_wrapper_app(environ, start_response):
    start_response(OK, TEXT)
    body = io.BytesIO(b'file contents here')
    environ['test.file'] = body
    return environ['wsgi.file_wrapper'](body, 4)


def status_app(status):
    def app(environ, start_response):
        start_response(status, TEXT)
        return [status.encode()]
    return app


def echo_environ(environ, start_response):
    """Remembers the environ it saw (for injection tests)."""
    environ['test.app_environ'] = dict(environ)
    start_response(OK, TEXT)
    return [b'ok']


def _leak(environ: dict[str, Any]) -> None:
    """Activate a span and never close its scope (a common app bug)."""
    scope = environ['test.tracer'].start_active_span('leaked')
    environ.setdefault('test.leaked', []).append(weakref.ref(scope.span))


def leak_in_app(environ, start_response):
    _leak(environ)
    start_response(OK, TEXT)
    return [b'leaky']


def leak_in_body(environ, start_response):
    start_response(OK, TEXT)

    def chunks():
        for number in range(2):
            _leak(environ)
            yield b'chunk%d ' % number
    return chunks()


# Apps whose response is not what they first asked for (what the client gets differs).

def returns_none(environ, start_response):
    start_response(OK, TEXT)
    return None


def returns_int(environ, start_response):
    start_response(OK, TEXT)
    return 42


def raise_before_first_chunk(environ, start_response):
    start_response(OK, TEXT)

    def chunks():
        raise AppError('before the first chunk')
        yield b'never'  # pragma: no cover
    return chunks()


def second_start_response(environ, start_response):
    """Changes its mind without exc_info: the server refuses the second call."""
    start_response(OK, TEXT)
    try:
        start_response('503 Service Unavailable', TEXT)
    except AssertionError:
        environ['test.refused'] = True
    return [b'first answer']


def exc_info_after_write(environ, start_response):
    """Reports an error once the headers went out: the server re-raises it."""
    write = start_response(OK, TEXT)
    write(b'partial')
    try:
        raise AppError('after the headers were sent')
    except AppError:
        start_response('500 Internal Server Error', TEXT, sys.exc_info())
    return [b'never sent']  # pragma: no cover


def exc_info_mid_body(environ, start_response):
    start_response(OK, TEXT)

    def chunks():
        yield b'first'
        try:
            raise AppError('after the headers were sent')
        except AppError:
            start_response('500 Internal Server Error', TEXT, sys.exc_info())
        yield b'never sent'  # pragma: no cover
    return chunks()


SECRET_URL = 'http://billing.internal/charge?acct=7&token=S3CR3T'


def raise_with_url(where):
    """Fails quoting a URL with a secret in it (as HTTP client errors do)."""
    def app(environ, start_response):
        if where == 'app':
            raise AppError(f'calling {SECRET_URL} failed')
        if where == 'exc_info':
            try:
                raise AppError(f'calling {SECRET_URL} failed')
            except AppError:
                start_response('502 Bad Gateway', TEXT, sys.exc_info())
                return [b'bad gateway']
        start_response(OK, TEXT)

        def chunks():
            yield b'first'
            raise AppError(f'calling {SECRET_URL} failed')
        return chunks()
    return app


def write_callable_in_environ(environ, start_response):
    """Keeps the write callable in the environ: the response is in a reference cycle."""
    environ['test.write'] = start_response(OK, TEXT)
    return [b'cycle']


def exc_info_then_raise(environ, start_response):
    """Reports the error through exc_info, then lets it propagate too."""
    try:
        raise AppError('reported and raised')
    except AppError:
        start_response('500 Internal Server Error', TEXT, sys.exc_info())
        raise
