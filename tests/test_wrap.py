"""wrap(app) end to end: environment -> our tracer -> Zipkin v2 over HTTP to a collector.

The collector is the package's ZipkinCollector, which rejects any span that does not
validate against Zipkin's v2 API (so every span asserted on here passed that check).
"""

from __future__ import annotations

import threading
import time
import wsgiref.simple_server

import falcon
import falcon.testing
import opentracing
import pytest

from falcon_tracing_wsgi import ConfigError, TracingMiddleware, wrap
from falcon_tracing_wsgi.integrations.requests import TracedSession

TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'


class Hello:
    def on_get(self, req, resp):
        resp.media = {'message': 'hello'}


class User:
    def on_get(self, req, resp, user_id):
        resp.media = {'user_id': user_id}


class Stream:
    """Records when its first and last chunks were produced."""

    def __init__(self, times):
        self.times = times

    def on_get(self, req, resp):
        def chunks():
            for number in range(50):
                self.times.append(time.time())
                yield b'x' * 1000
        resp.stream = chunks()


class Boom:
    def on_get(self, req, resp):
        raise KeyError('missing thing')


class Forward:
    """Remembers the propagation headers that code forwarding 'the incoming headers' sees."""

    def __init__(self, seen):
        self.seen = seen

    def on_get(self, req, resp):
        self.seen.update({key: value for key, value in req.env.items()
                          if key in ('HTTP_X_B3_TRACEID', 'HTTP_X_B3_SPANID',
                                     'HTTP_X_B3_PARENTSPANID', 'HTTP_TRACEPARENT')})
        resp.media = {}


@pytest.fixture
def traced(collector, monkeypatch):
    """A Falcon app wrapped by wrap(), configured only through the environment."""
    monkeypatch.setenv('FALCON_TRACING_SERVICE_NAME', 'shop')
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_URL', collector.url)
    monkeypatch.setenv('FALCON_TRACING_PROPAGATION', 'b3,w3c')
    stream_times, forwarded = [], {}
    app = falcon.App()
    app.add_route('/hello', Hello())
    app.add_route('/users/{user_id}', User())
    app.add_route('/stream', Stream(stream_times))
    app.add_route('/boom', Boom())
    app.add_route('/forward', Forward(forwarded))
    wrapped = wrap(app)
    yield falcon.testing.TestClient(wrapped), stream_times, forwarded
    opentracing.global_tracer().close(5)


def exported(collector, count):
    assert opentracing.global_tracer().flush(5)
    assert collector.wait_for_spans(count, 5)
    return collector.spans()


def by_name(spans):
    return {span['name']: span for span in spans}


def test_one_valid_zipkin_span_per_request(traced, collector):
    client, _, _ = traced
    statuses = [client.simulate_get(path).status_code
                for path in ('/hello', '/users/42', '/stream', '/boom', '/no/such/page')]
    assert statuses == [200, 200, 200, 500, 404]
    spans = by_name(exported(collector, 5))
    assert set(spans) == {'GET /hello', 'GET /users/{user_id}', 'GET /stream', 'GET /boom',
                          'GET'}
    for span in spans.values():
        assert span['kind'] == 'SERVER'
        assert span['localEndpoint']['serviceName'] == 'shop'
        assert all(isinstance(value, str) for value in span['tags'].values())
        assert len(span['id']) == 16 and len(span['traceId']) == 32
    assert spans['GET /users/{user_id}']['tags']['http.route'] == '/users/{user_id}'
    assert spans['GET /users/{user_id}']['tags']['http.status_code'] == '200'
    assert spans['GET']['tags']['http.status_code'] == '404'
    assert [name for name, span in spans.items() if 'error' in span['tags']] == ['GET /boom']
    (annotation,) = spans['GET /boom']['annotations']
    assert 'KeyError' in annotation['value'] and 'missing thing' in annotation['value']


def test_streamed_span_is_at_least_as_long_as_the_stream(traced, collector):
    client, times, _ = traced
    assert len(client.simulate_get('/stream').content) == 50_000
    (span,) = exported(collector, 1)
    start, end = span['timestamp'], span['timestamp'] + span['duration']
    assert start <= round(times[0] * 1e6) and end >= int(times[-1] * 1e6)


def test_incoming_w3c_context_continues_and_environ_names_the_server_span(traced, collector):
    client, _, forwarded = traced
    client.simulate_get('/forward', headers={'traceparent': TRACEPARENT})
    (span,) = exported(collector, 1)
    assert span['traceId'] == '4bf92f3577b34da6a3ce929d0e0e4736'
    assert span['parentId'] == '00f067aa0ba902b7'
    # Whatever forwards the incoming headers now makes the server span the parent.
    assert forwarded['HTTP_X_B3_SPANID'] == span['id']
    assert forwarded['HTTP_X_B3_TRACEID'] == span['traceId']
    assert forwarded['HTTP_TRACEPARENT'] == f'00-{span["traceId"]}-{span["id"]}-01'


@pytest.mark.parametrize('headers', [
    pytest.param({'traceparent': '00-' + '0' * 32 + '-00f067aa0ba902b7-01'}, id='zero-trace'),
    pytest.param({'traceparent': 'ff-' + 'a' * 32 + '-' + 'b' * 16 + '-01'}, id='version-ff'),
    pytest.param({'X-B3-TraceId': 'XYZ', 'X-B3-SpanId': '1'}, id='b3-garbage'),
    pytest.param({'b3': '-' * 5000}, id='b3-huge'),
    pytest.param({'traceparent': TRACEPARENT + ',' + TRACEPARENT}, id='duplicated'),
    pytest.param({'X-B3-Sampled': 'maybe', 'X-B3-TraceId': 'a' * 16,
                  'X-B3-SpanId': 'b' * 16}, id='bad-sampled'),
    pytest.param({'tracestate': 'k=' + 'v' * 100_000, 'traceparent': TRACEPARENT},
                 id='huge-tracestate'),
])
def test_malformed_trace_headers_never_cause_a_5xx(traced, collector, headers):
    client, _, _ = traced
    assert client.simulate_get('/hello', headers=headers).status_code == 200
    (span,) = exported(collector, 1)
    assert 'error' not in span['tags']


def test_client_and_server_spans_of_one_request_link_up(collector, monkeypatch):
    """A frontend calls a backend over real HTTP through the traced requests session:
    three spans, one trace, each parent the span before it."""
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_URL', collector.url)
    backend_app = falcon.App()
    backend_app.add_route('/users/{user_id}', User())
    backend = wsgiref.simple_server.make_server(
        '127.0.0.1', 0, wrap(backend_app, service_name='backend'),
        handler_class=_QuietHandler)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    try:
        session = TracedSession()

        class Front:
            def on_get(self, req, resp):
                url = f'http://127.0.0.1:{backend.server_port}/users/7'
                resp.media = session.get(url, timeout=5).json()
        front_app = falcon.App()
        front_app.add_route('/front', Front())
        client = falcon.testing.TestClient(TracingMiddleware(front_app))
        assert client.simulate_get('/front').json == {'user_id': '7'}
        spans = by_name(exported(collector, 3))
    finally:
        backend.shutdown()
        backend.server_close()
        thread.join(5)
    front, call, back = spans['GET /front'], spans['HTTP GET'], spans['GET /users/{user_id}']
    assert front['traceId'] == call['traceId'] == back['traceId']
    assert call['parentId'] == front['id'] and call['kind'] == 'CLIENT'
    assert back['parentId'] == call['id'] and back['kind'] == 'SERVER'
    assert 'parentId' not in front


def test_bad_configuration_stops_startup(monkeypatch):
    monkeypatch.setenv('FALCON_TRACING_SAMPLE_RATE', 'half')
    with pytest.raises(ConfigError, match='FALCON_TRACING_SAMPLE_RATE'):
        wrap(falcon.App())


@pytest.mark.parametrize('env, name', [
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://127.0.0.1:94111/api/v2/spans'},
                 'FALCON_TRACING_ZIPKIN_URL', id='zipkin-port'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://user:pw@127.0.0.1:9411/'},
                 'FALCON_TRACING_ZIPKIN_URL', id='zipkin-credentials'),
    pytest.param({'FALCON_TRACING_REPORTER': 'xray',
                  'FALCON_TRACING_XRAY_DAEMON_ADDRESS': '127.0.0.1:0'},
                 'FALCON_TRACING_XRAY_DAEMON_ADDRESS', id='xray-port'),
    pytest.param({'FALCON_TRACING_LOG_FILE': '/no/such/directory/spans.log'},
                 'FALCON_TRACING_LOG_FILE', id='log-file-directory-missing'),
    pytest.param({'FALCON_TRACING_LOG_FILE': '/'}, 'FALCON_TRACING_LOG_FILE',
                 id='log-file-is-a-directory'),
])
def test_every_address_problem_is_a_config_error_at_startup(monkeypatch, env, name):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=name):
        wrap(falcon.App())


def test_the_startup_log_line_shows_no_secret(monkeypatch, caplog, collector):
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_URL', collector.url + '?token=s3cr3t')
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_HEADERS', 'Authorization=Bearer s3cr3t')
    with caplog.at_level('INFO', logger='falcon_tracing_wsgi'):
        wrap(falcon.App())
    (line,) = [r.getMessage() for r in caplog.records if 'reporter=zipkin' in r.getMessage()]
    assert 's3cr3t' not in line and collector.url + '?***' in line


def test_disabled_returns_the_app_itself(monkeypatch):
    monkeypatch.setenv('FALCON_TRACING_ENABLED', 'false')
    app = falcon.App()
    assert wrap(app) is app


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_process_tags_from_the_environment(collector, monkeypatch):
    monkeypatch.setenv('FALCON_TRACING_ZIPKIN_URL', collector.url)
    monkeypatch.setenv('FALCON_TRACING_TAGS', 'env=staging,region=eu-1')
    app = falcon.App()
    app.add_route('/hello', Hello())
    falcon.testing.TestClient(wrap(app)).simulate_get('/hello')
    (span,) = exported(collector, 1)
    assert span['tags']['env'] == 'staging' and span['tags']['region'] == 'eu-1'
