"""The demo's frontend service: it calls the backend through the traced ``requests`` session.

Run the way the README's quick start runs an app, with :func:`~falcon_tracing_wsgi.wrap`
in the code and the gunicorn hooks::

    FALCON_TRACING_SERVICE_NAME=frontend \\
        gunicorn -c python:falcon_tracing_wsgi.gunicorn \\
        'falcon_tracing_wsgi.demo.frontend:application("http://127.0.0.1:8001")'

(the backend's URL is the factory's argument: it is the app's own setting, not a
tracing one).

Routes:

``GET /checkout/{item_id}``
    Asks the backend for the item: one CLIENT span, and the backend's spans below it.
``GET /broken``
    Calls the backend's failing route and answers 502: errors on both sides.
``GET /stream``
    A streamed body of three chunks; each chunk is produced by a backend call, so the
    server span lasts as long as the stream and the client spans sit inside it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Callable

import falcon

from falcon_tracing_wsgi import wrap
from falcon_tracing_wsgi.integrations.requests import TracedSession

__all__ = ['create_app', 'application']

_TIMEOUT = 5.0


class _Backend:
    """The backend's HTTP API; one traced session per thread (sessions are not shared)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip('/')
        self._local = threading.local()

    def get(self, path: str) -> Any:
        session = getattr(self._local, 'session', None)
        if session is None:
            session = self._local.session = TracedSession()
        return session.get(self.base_url + path, timeout=_TIMEOUT)


class _Checkout:
    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        answer = self._backend.get(f'/items/{item_id}')
        if answer.status_code != 200:
            raise falcon.HTTPBadGateway(description=f'backend answered {answer.status_code}')
        stock = answer.json()['stock']
        resp.media = {'item': item_id, 'available': stock > 0}


class _Broken:
    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        answer = self._backend.get('/fail')
        raise falcon.HTTPBadGateway(description=f'backend answered {answer.status_code}')


class _Stream:
    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        # Runs while the server sends the body, after on_get has returned.
        for item_id in ('1', '2', '3'):
            stock = self._backend.get(f'/items/{item_id}').json()['stock']
            yield f'item {item_id}: {stock} in stock\n'.encode()


def create_app(backend_url: str) -> falcon.App[Any, Any]:
    """The frontend's Falcon app, calling the backend at ``backend_url``."""
    backend = _Backend(backend_url)
    app = falcon.App()
    app.add_route('/checkout/{item_id}', _Checkout(backend))
    app.add_route('/broken', _Broken(backend))
    app.add_route('/stream', _Stream(backend))
    return app


def application(backend_url: str) -> Callable[..., Any]:
    """The traced app: ``wrap(create_app(backend_url))``, as a gunicorn factory."""
    return wrap(create_app(backend_url))
