"""The floor yardstick (``benchmarks/floor.py``) does the package's job, nothing less.

Its instruction count is compared with the package's (``bench_instructions.py``), so it
must make what the package makes for the same request: the same Zipkin JSON (but for
the ids and the times), the same trace headers in the environ for the app's outgoing
calls, ``req.context.span`` during the request, and one span reported per request.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import falcon
import pytest

from falcon_tracing_wsgi import TracingMiddleware
from falcon_tracing_wsgi.testing import make_tracer
from falcon_tracing_wsgi.zipkin import Endpoint, JsonV2Encoder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'benchmarks'))
from floor import wrap_floor  # noqa: E402

#: Each yardstick variant and its wrap_floor kind.
_KINDS = {'floor': 'floor', 'floor_kept': 'kept', 'floor_complete': 'complete'}
#: What differs between any two requests, whoever traces them.
_PER_REQUEST = ('traceId', 'id', 'timestamp', 'duration')
_HEADERS = ('HTTP_X_B3_TRACEID', 'HTTP_X_B3_SPANID', 'HTTP_X_B3_SAMPLED', 'HTTP_TRACEPARENT')


def _environ(path: str) -> dict[str, Any]:
    return {'REQUEST_METHOD': 'GET', 'PATH_INFO': path, 'QUERY_STRING': '',
            'SERVER_NAME': 'localhost', 'SERVER_PORT': '8000', 'HTTP_HOST': 'localhost:8000',
            'SERVER_PROTOCOL': 'HTTP/1.1', 'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '54321',
            'wsgi.url_scheme': 'http', 'wsgi.input': None, 'wsgi.errors': sys.stderr,
            'wsgi.version': (1, 0), 'wsgi.multithread': False, 'wsgi.multiprocess': False,
            'wsgi.run_once': False}


class _Users:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_get(self, req: falcon.Request, resp: falcon.Response,
               user_id: str = 'none') -> None:
        self.seen.append((getattr(req.context, 'span', None), dict(req.env)))
        resp.media = {'user_id': user_id}


def _serve(kind: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(the span's JSON without per-request values, the app's environ, the span the app
    saw is the one reported) for one ``GET /users/42`` traced by ``kind``."""
    tracer, keep = make_tracer(('b3', 'w3c', 'baggage'))
    users = _Users()
    app = falcon.App()
    app.add_route('/users/{user_id}', users)
    wrapped = (TracingMiddleware(app, tracer=tracer) if kind == 'package'
               else wrap_floor(app, tracer, _KINDS[kind]))
    environ = _environ('/users/42')
    result = wrapped(environ, lambda status, headers, exc_info=None: None)
    body = b''.join(result)
    result.close()
    assert json.loads(body) == {'user_id': '42'}
    [span] = keep.spans
    [(seen, env)] = users.seen
    encoded = json.loads(JsonV2Encoder(Endpoint('bench', '10.0.0.7')).encode(span))
    return ({key: value for key, value in encoded.items() if key not in _PER_REQUEST},
            {key: env.get(key) for key in _HEADERS}, {'same span': seen is span,
                                                      'ids': (encoded['traceId'], encoded['id'])})


@pytest.mark.parametrize('kind', list(_KINDS))
def test_the_floor_makes_the_packages_span_and_headers(kind: str) -> None:
    package_json, package_headers, package_span = _serve('package')
    floor_json, floor_headers, floor_span = _serve(kind)

    assert floor_json == package_json
    assert package_json['name'] == 'GET /users/{user_id}'  # the route came through
    assert package_json['tags']['falcon.responder'] == 'on_get'
    assert package_span['same span'] and floor_span['same span']
    for headers, span in ((package_headers, package_span), (floor_headers, floor_span)):
        trace_id, span_id = span['ids']
        assert headers == {'HTTP_X_B3_TRACEID': trace_id, 'HTTP_X_B3_SPANID': span_id,
                           'HTTP_X_B3_SAMPLED': '1',
                           'HTTP_TRACEPARENT': f'00-{trace_id}-{span_id}-03'}


def _serve_other(kind: str, path: str) -> tuple[Any, dict[str, Any], list[Any], str]:
    """(the span the app saw, the app's trace headers, the spans reported, the body) for
    one ``GET path`` to the package or to floor_complete, with the settings in the
    environment (the floor reads them there, as the benchmark's variants do)."""
    from falcon_tracing_wsgi.config import TracingConfig
    from falcon_tracing_wsgi.tracer import ConstSampler

    sampled = TracingConfig.from_env().sample_rate == 1
    tracer, keep = make_tracer(('b3', 'w3c', 'baggage'), sampler=ConstSampler(sampled))
    users = _Users()
    app = falcon.App()
    app.add_route('/users/{user_id}', users)
    app.add_route('/hello', users)
    wrapped = (TracingMiddleware(app, tracer=tracer) if kind == 'package'
               else wrap_floor(app, tracer, 'complete'))
    environ = _environ(path)
    result = wrapped(environ, lambda status, headers, exc_info=None: None)
    body = b''.join(result)
    getattr(result, 'close', lambda: None)()
    [(seen, env)] = users.seen
    return seen, {key: env.get(key) for key in _HEADERS}, keep.spans, body.decode()


def test_the_floors_unsampled_request_is_the_packages(monkeypatch):
    """floor_unsampled: the same headers (not sampled), an unsampled span for
    ``req.context.span`` with the headers' ids, nothing reported."""
    monkeypatch.setenv('FALCON_TRACING_SAMPLE_RATE', '0')
    for kind in ('package', 'floor'):
        seen, headers, reported, body = _serve_other(kind, '/users/42')
        context = seen.context
        assert (type(seen).__name__, context.sampled, reported) == ('UnsampledSpan', False, [])
        trace_id, span_id = context.trace_id, context.span_id
        assert headers == {'HTTP_X_B3_TRACEID': trace_id, 'HTTP_X_B3_SPANID': span_id,
                           'HTTP_X_B3_SAMPLED': '0',
                           'HTTP_TRACEPARENT': f'00-{trace_id}-{span_id}-02'}, kind
        assert json.loads(body) == {'user_id': '42'}


@pytest.mark.parametrize('path', ['/hello', '/users/42'])
def test_the_floors_excluded_request_is_the_packages(monkeypatch, path):
    """floor_excluded: the benchmark's rules (an exact path, a prefix) leave the request
    untraced: no span for the app, no headers, nothing reported."""
    monkeypatch.setenv('FALCON_TRACING_EXCLUDE', 'GET /hello,GET /users/*')
    for kind in ('package', 'floor'):
        seen, headers, reported, _body = _serve_other(kind, path)
        assert (seen, headers, reported) == (None, dict.fromkeys(_HEADERS), []), kind
