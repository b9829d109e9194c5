"""The Falcon app the end-to-end tests run under gunicorn (not traced by itself).

``tests.e2e.wsgi:app`` is this app wrapped with ``wrap()``, the way a user's project
does it; the zero-code entrypoint test runs ``tests.e2e.apps:create_app()`` instead.

Routes:

``GET /hello``   200 ``hello``, with the worker's pid in ``X-Worker-Pid``
``GET /call``    calls ``$E2E_DOWNSTREAM_URL/hello`` through the traced requests session
``GET /fail``    raises: 500
``GET /stream``  three chunks, streamed
``GET /block``   blocks for a minute: longer than any ``--timeout`` the tests use
``GET /file``    the file ``$E2E_FILE`` as a stream (gunicorn sends it with ``sendfile()``)
"""

from __future__ import annotations

import os
import threading

import falcon

from falcon_tracing_wsgi.integrations.requests import TracedSession

_local = threading.local()


class Hello:
    def on_get(self, req, resp):
        resp.set_header('X-Worker-Pid', str(os.getpid()))
        resp.text = 'hello'


class Call:
    def on_get(self, req, resp):
        session = getattr(_local, 'session', None)
        if session is None:
            session = _local.session = TracedSession()
        answer = session.get(os.environ['E2E_DOWNSTREAM_URL'] + '/hello', timeout=10)
        resp.set_header('X-Worker-Pid', str(os.getpid()))
        resp.status = falcon.HTTP_200 if answer.status_code == 200 else falcon.HTTP_502
        resp.text = answer.text


class Fail:
    def on_get(self, req, resp):
        raise RuntimeError('an e2e failure')


class Stream:
    def on_get(self, req, resp):
        resp.set_header('X-Worker-Pid', str(os.getpid()))
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = (f'chunk {index}\n'.encode() for index in range(3))


class Block:
    def on_get(self, req, resp):
        # Blocks the (sync) worker until gunicorn's worker timeout aborts it.
        threading.Event().wait(60)
        resp.text = 'too late'


class File:
    def on_get(self, req, resp):
        path = os.environ['E2E_FILE']
        resp.content_type = 'application/octet-stream'
        resp.content_length = os.path.getsize(path)
        resp.stream = open(path, 'rb')  # Falcon hands it to wsgi.file_wrapper


def create_app():
    app = falcon.App()
    app.add_route('/hello', Hello())
    app.add_route('/call', Call())
    app.add_route('/fail', Fail())
    app.add_route('/stream', Stream())
    app.add_route('/block', Block())
    app.add_route('/file', File())
    return app
