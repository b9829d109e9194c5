"""The demo's backend service: an inventory, with one route that always fails.

Run the way an app that cannot be edited is run, through the zero-code entrypoint::

    FALCON_TRACING_SERVICE_NAME=backend \\
    FALCON_TRACING_APP='falcon_tracing_wsgi.demo.backend:create_app()' \\
        gunicorn -c python:falcon_tracing_wsgi.gunicorn falcon_tracing_wsgi.entrypoint:app

Nothing in this module knows about tracing, except that the lookup is wrapped in a span
of its own through the OpenTracing API, to show a span inside a service.

Routes:

``GET /items/{item_id}``
    ``{"item": ..., "stock": ...}``, with an ``inventory.lookup`` child span.
``GET /fail``
    Raises, so Falcon answers 500: the traced error of the demo.
"""

from __future__ import annotations

from typing import Any

import falcon
import opentracing

__all__ = ['create_app']

_STOCK = {'42': 7, '7': 0, '1': 3, '2': 12, '3': 1}


class _Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        with opentracing.global_tracer().start_active_span('inventory.lookup') as scope:
            scope.span.set_tag('item.id', item_id)
            stock = _STOCK.get(item_id, 0)
        resp.media = {'item': item_id, 'stock': stock}


class _Fail:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise RuntimeError('the inventory database is unavailable (a demo failure)')


def create_app() -> falcon.App[Any, Any]:
    """The backend's Falcon app (not traced by itself: the entrypoint wraps it)."""
    app = falcon.App()
    app.add_route('/items/{item_id}', _Item())
    app.add_route('/fail', _Fail())
    return app
