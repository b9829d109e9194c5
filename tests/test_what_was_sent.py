"""The server span describes what the client got, checked against a real PEP 3333 server.

Each app runs under ``wsgiref``'s handler (the reference server: what it writes on the
wire is parsed back) wrapped in the middleware; the span's status, error and abort tags
must agree with the response the server actually sent, and an exception must be logged
once, however many layers see it go by.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import wsgiref.handlers
import wsgiref.util

import pytest

from falcon_tracing_wsgi.middleware import TracingMiddleware

from . import apps
from .harness import make_environ


class _Handler(wsgiref.handlers.SimpleHandler):
    def log_exception(self, exc_info):  # keep the test output quiet
        pass


def serve(app):
    """Run ``app`` once under wsgiref; return (status code sent or None, body bytes)."""
    environ = make_environ()
    del environ['wsgi.file_wrapper']  # the handler sets its own
    out = io.BytesIO()
    handler = _Handler(io.BytesIO(), out, io.StringIO(), environ, multithread=False)
    try:
        handler.run(app)
    except apps.AppError:
        pass  # wsgiref re-raises once the headers went out (it closes the connection)
    raw = out.getvalue()
    if not raw:
        return None, b''
    head, _, body = raw.partition(b'\r\n\r\n')
    return int(head.split(b' ', 2)[1]), body


def error_logs(span):
    return [log.key_values for log in span.logs if log.key_values.get('event') == 'error']


@pytest.mark.parametrize('app, status, error, aborted, errors', [
    pytest.param(apps.list_body, 200, False, False, 0, id='ok'),
    pytest.param(apps.returns_none, 500, True, False, 1, id='returns-none'),
    pytest.param(apps.returns_int, 500, True, False, 1, id='returns-int'),
    pytest.param(apps.raise_after_start_response, 500, True, False, 1,
                 id='raises-after-start-response'),
    pytest.param(apps.raise_before_first_chunk, 500, True, False, 1,
                 id='raises-before-first-chunk'),
    pytest.param(apps.raise_mid_body, 200, True, True, 1, id='raises-mid-body'),
    pytest.param(apps.second_start_response, 200, False, False, 0,
                 id='second-start-response-refused'),
    pytest.param(apps.exc_info_app, 500, True, False, 1, id='exc-info-accepted'),
    pytest.param(apps.exc_info_after_write, 200, True, True, 1,
                 id='exc-info-after-write'),
    pytest.param(apps.exc_info_mid_body, 200, True, True, 1, id='exc-info-mid-body'),
    pytest.param(apps.exc_info_then_raise, 500, True, False, 1, id='exc-info-then-raise'),
])
def test_span_agrees_with_the_response_the_server_sent(tracer, app, status, error, aborted,
                                                       errors):
    sent_status, _ = serve(TracingMiddleware(app, tracer))
    assert sent_status == status  # the expectation is about the server, not us
    (span,) = tracer.finished_spans()
    assert span.tags.get('http.status_code') == sent_status
    assert span.tags.get('error', False) is error
    assert span.tags.get('http.aborted', False) is aborted
    assert len(error_logs(span)) == errors


# --------------------------------------------------------------------------- sendfile

SIZE = 4 << 20  # larger than the socket buffers, so a reader that stops cuts it short


def _file_app(tmp_path):
    path = tmp_path / 'payload.bin'
    path.write_bytes(os.urandom(SIZE))

    def app(environ, start_response):
        start_response(apps.OK, [('Content-Type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](open(path, 'rb'), 8192)
    return app


def _reader(sock, limit, into):
    with sock:
        while len(into) < limit:
            data = sock.recv(min(65536, limit - len(into)))
            if not data:
                return
            into.extend(data)


def _sendfile_server(app, client_reads):
    """Serve like gunicorn's sendfile path: socket.sendfile() on the file wrapper's file
    from its current offset, the descriptor moved back to that offset after a successful
    send (gunicorn does), then the response closed (also when the send failed)."""
    environ = make_environ()
    environ['wsgi.file_wrapper'] = wsgiref.util.FileWrapper
    server, client = socket.socketpair()
    received = bytearray()
    reader = threading.Thread(target=_reader, args=(client, client_reads, received))
    with server:
        result = app(environ, lambda status, headers, exc_info=None: None)
        assert isinstance(result, wsgiref.util.FileWrapper)
        server.settimeout(10)
        reader.start()
        try:
            filelike = result.filelike
            offset = os.lseek(filelike.fileno(), 0, os.SEEK_CUR)
            server.sendfile(filelike, offset, os.fstat(filelike.fileno()).st_size - offset)
            os.lseek(filelike.fileno(), offset, os.SEEK_SET)
        except OSError:
            pass  # BrokenPipeError / ConnectionResetError: the client went away
        finally:
            result.close()
            server.close()
            reader.join(10)
    return bytes(received)


@pytest.mark.parametrize('client_reads, aborted', [
    pytest.param(SIZE, False, id='sent-in-full'),
    pytest.param(1 << 16, True, id='client-went-away-mid-file'),
    pytest.param(0, True, id='client-went-away-at-once'),
])
def test_sendfile_transfer_is_measured_and_a_cut_one_is_aborted(
        tracer, tmp_path, client_reads, aborted):
    received = _sendfile_server(TracingMiddleware(_file_app(tmp_path), tracer), client_reads)
    assert len(received) == client_reads
    (span,) = tracer.finished_spans()
    assert span.tags.get('http.aborted', False) is aborted
    size = span.tags.get('http.response_size', 0)
    assert size == SIZE if not aborted else size < SIZE
