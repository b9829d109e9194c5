"""A non-Falcon framework: a werkzeug app through werkzeug's own test client."""

from __future__ import annotations

import pytest
from werkzeug.routing import Map, Rule
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from falcon_tracing_wsgi.middleware import ENVIRON_ROUTE, TracingMiddleware

URLS = Map([Rule('/users/<int:user_id>', endpoint='user'),
            Rule('/stream', endpoint='stream')])


@Request.application
def werkzeug_app(request):
    adapter = URLS.bind_to_environ(request.environ)
    rule, args = adapter.match(return_rule=True)
    # The documented way for any framework to name the span: the matched rule.
    request.environ[ENVIRON_ROUTE] = rule.rule
    if rule.endpoint == 'stream':
        return Response((b'%d' % n for n in range(3)), direct_passthrough=True)
    return Response(f'user {args["user_id"]}')


@pytest.mark.parametrize('path, name, body', [
    pytest.param('/users/7', 'GET /users/<int:user_id>', b'user 7', id='rule'),
    pytest.param('/stream', 'GET /stream', b'012', id='stream'),
])
def test_werkzeug_app_named_by_its_rule(tracer, path, name, body):
    client = Client(TracingMiddleware(werkzeug_app, tracer))
    response = client.get(path, headers={'User-Agent': 'test'})
    assert response.data == body
    assert tracer.finished_spans() == []  # the span ends when the response is closed
    response.close()
    (span,) = tracer.finished_spans()
    assert span.operation_name == name
    assert span.tags['http.status_code'] == 200
    assert span.tags['component'] == 'wsgi'


def test_werkzeug_404_keeps_the_method_name(tracer):
    client = Client(TracingMiddleware(werkzeug_app, tracer))
    response = client.get('/nope')
    assert response.status_code == 404
    response.close()
    (span,) = tracer.finished_spans()
    assert span.operation_name == 'GET'
    assert span.tags['http.status_code'] == 404
    assert 'error' not in span.tags
