"""The Falcon integration through falcon.testing (which validates PEP 3333 on every call)."""

from __future__ import annotations

import falcon
import falcon.testing
import pytest

from falcon_tracing_wsgi.integrations.falcon import (
    TracingComponent, instrument_app, traced_error_handler,
)
from falcon_tracing_wsgi.middleware import TracingMiddleware
from falcon_tracing_wsgi.testing import make_tracer
from falcon_tracing_wsgi.tracer.limits import SpanLimits


class HelloResource:
    """The seed's example resource, unchanged: it reaches the span via req.context."""

    def on_get(self, req, resp):
        span = req.context['span']
        span.log_kv({'event': 'hello', 'who': 'world'})
        span.set_tag('seed.example', True)
        resp.media = {'message': 'hello'}


class UserResource:
    def on_get(self, req, resp, user_id):
        if 'span' in req.context:
            assert req.context.span is req.context['span']
        resp.media = {'user_id': user_id}


class StreamResource:
    def __init__(self, tracer):
        self.tracer = tracer

    def on_get(self, req, resp):
        tracer = self.tracer

        def chunks():
            for number in range(3):
                assert tracer.active_span is req.context.span
                yield b'%d\n' % number
        resp.stream = chunks()


class BoomResource:
    def on_get(self, req, resp):
        raise ZeroDivisionError('boom')


class ErrorsResource:
    def on_get(self, req, resp, code):
        if code == '404':
            raise falcon.HTTPNotFound(title='no such thing')
        if code == '503':
            raise falcon.HTTPServiceUnavailable(title='later')
        raise falcon.HTTPStatus(falcon.HTTP_204)


#: Falcon 4.4+ has the error reporter hook; older versions use the error-handler fallback.
HAS_REPORTER = hasattr(falcon.App, 'set_error_reporter')


def make_app(tracer, **app_kwargs):
    app = falcon.App(**app_kwargs)
    app.add_route('/hello', HelloResource())
    app.add_route('/users/{user_id}', UserResource())
    app.add_route('/stream', StreamResource(tracer))
    app.add_route('/boom', BoomResource())
    app.add_route('/errors/{code}', ErrorsResource())
    return app


@pytest.fixture
def client(tracer):
    return falcon.testing.TestClient(TracingMiddleware(make_app(tracer), tracer))


def only_span(tracer):
    (span,) = tracer.finished_spans()
    return span


@pytest.mark.parametrize('path, name, route, status, error', [
    pytest.param('/hello', 'GET /hello', '/hello', 200, False, id='hello'),
    pytest.param('/users/42', 'GET /users/{user_id}', '/users/{user_id}', 200, False,
                 id='template'),
    pytest.param('/stream', 'GET /stream', '/stream', 200, False, id='stream'),
    pytest.param('/boom', 'GET /boom', '/boom', 500, True, id='raises'),
    pytest.param('/errors/404', 'GET /errors/{code}', '/errors/{code}', 404, False,
                 id='http-error-4xx'),
    pytest.param('/errors/503', 'GET /errors/{code}', '/errors/{code}', 503, True,
                 id='http-error-5xx'),
    pytest.param('/errors/204', 'GET /errors/{code}', '/errors/{code}', 204, False,
                 id='http-status'),
    pytest.param('/no/such/path', 'GET', None, 404, False, id='unrouted'),
])
def test_span_named_from_route_template(client, tracer, path, name, route, status, error):
    result = client.simulate_get(path)
    assert result.status_code == status
    span = only_span(tracer)
    assert span.operation_name == name
    assert span.tags.get('http.route') == route
    assert span.tags['http.status_code'] == status
    assert span.tags.get('error', False) is error
    assert span.tags['component'] == 'falcon'
    assert '/no/such' not in span.operation_name


def test_resource_and_responder_tags(client, tracer):
    client.simulate_get('/users/7')
    tags = only_span(tracer).tags
    assert tags['falcon.resource'] == 'UserResource'
    assert tags['falcon.responder'] == 'on_get'


def test_seed_example_resource_works_as_is(client, tracer):
    result = client.simulate_get('/hello')
    assert result.json == {'message': 'hello'}
    span = only_span(tracer)
    assert span.tags['seed.example'] is True
    assert span.logs[0].key_values == {'event': 'hello', 'who': 'world'}


def test_unhandled_exception_details_are_recorded(client, tracer):
    result = client.simulate_get('/boom')
    assert result.status_code == 500
    span = only_span(tracer)
    (event,) = [log.key_values for log in span.logs]
    assert event['event'] == 'error'
    assert event['error.kind'] == 'ZeroDivisionError'
    assert event['message'] == 'boom'
    assert 'ZeroDivisionError: boom' in event['stack']


def test_response_is_what_falcon_sends_without_tracing(tracer):
    bare = falcon.testing.TestClient(make_app(tracer))
    traced = falcon.testing.TestClient(TracingMiddleware(make_app(tracer), tracer))
    for path in ('/boom', '/errors/404', '/errors/503', '/errors/204', '/no/such/path',
                 '/users/3'):
        want, got = bare.simulate_get(path), traced.simulate_get(path)
        assert (got.status, got.content) == (want.status, want.content), path


def test_http_error_4xx_is_not_recorded_as_exception(client, tracer):
    client.simulate_get('/errors/404')
    assert only_span(tracer).logs == []


def test_user_error_handler_is_kept(tracer):
    def handle_zero(req, resp, ex, params):
        resp.status = falcon.HTTP_418
        resp.media = {'handled': str(ex)}
    app = make_app(tracer)
    app.add_error_handler(ZeroDivisionError, handle_zero)
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer))
    result = client.simulate_get('/boom')
    assert result.status_code == 418
    assert result.json == {'handled': 'boom'}
    span = only_span(tracer)
    # The app turned the exception into a 4xx on purpose: not an error.
    assert span.tags.get('error', False) is False
    if HAS_REPORTER:  # the reporter still sees the exception and logs it on the span
        assert span.logs[0].key_values['error.kind'] == 'ZeroDivisionError'
    else:  # before 4.4 the user's more specific handler runs instead of ours
        assert span.logs == []


def test_streamed_span_covers_the_stream(client, tracer):
    result = client.simulate_get('/stream')
    assert result.text == '0\n1\n2\n'
    span = only_span(tracer)
    assert span.tags['http.response_size'] == 6
    assert 'http.aborted' not in span.tags


def test_component_is_not_added_twice(tracer):
    app = make_app(tracer, middleware=[TracingComponent()])
    wrapped = TracingMiddleware(TracingMiddleware(app, tracer), tracer)
    instrument_app(app)
    client = falcon.testing.TestClient(wrapped)
    client.simulate_get('/users/1')
    spans = tracer.finished_spans()
    # Two wrappers make two server spans (both learn the route from the environ); the
    # components act on the environ's span, the inner wrapper's: one span carries the
    # resource tags, with the same values whichever component wrote them.
    assert [span.operation_name for span in spans] == ['GET /users/{user_id}'] * 2
    assert [span.tags.get('falcon.resource') for span in spans].count('UserResource') == 1


def test_component_without_wrapper_does_nothing(tracer):
    app = make_app(tracer, middleware=[TracingComponent()])
    client = falcon.testing.TestClient(app)
    assert client.simulate_get('/users/1').status_code == 200
    assert tracer.finished_spans() == []


def test_pre_44_fallback_handler_records_and_keeps_default_response(tracer):
    """The Falcon < 4.4 path (an Exception handler) behaves like Falcon's default."""
    from falcon_tracing_wsgi.integrations import falcon as integration
    app = make_app(tracer)
    app.add_error_handler(Exception,
                          traced_error_handler(integration._default_exception_handler))
    bare = falcon.testing.TestClient(make_app(tracer)).simulate_get('/boom')
    if HAS_REPORTER:
        app.set_error_reporter(lambda *args: None)  # only the handler records here
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer))
    result = client.simulate_get('/boom')
    assert (result.status, result.content) == (bare.status, bare.content)
    assert only_span(tracer).logs[0].key_values['error.kind'] == 'ZeroDivisionError'


# --------------------------------------------------------------------------- never fail

class _SlottedContext:
    __slots__ = ('user',)


class _FrozenContext:
    def __setattr__(self, name, value):
        raise AttributeError(f'{name} is read-only')

    def __setitem__(self, name, value):
        raise KeyError(name)


class _DictContext(dict):
    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(name)


@pytest.mark.parametrize('context_type, in_context', [
    pytest.param(_SlottedContext, False, id='slotted'),
    pytest.param(_FrozenContext, False, id='read-only'),
    pytest.param(_DictContext, True, id='dict-like'),
])
def test_any_context_type_answers_as_bare(tracer, context_type, in_context):
    """A request context that cannot hold the span is not an error (it was a 500)."""
    class Request(falcon.Request):
        pass
    Request.context_type = context_type
    seen = []

    class Resource:
        def on_get(self, req, resp):
            seen.append((req.env.get('falcon_tracing_wsgi.span'), req.context))
            resp.media = {'ok': True}

    def make():
        app = falcon.App(request_type=Request)
        app.add_route('/', Resource())
        return app
    bare = falcon.testing.TestClient(make()).simulate_get('/')
    traced = falcon.testing.TestClient(TracingMiddleware(make(), tracer)).simulate_get('/')
    assert (traced.status, traced.content) == (bare.status, bare.content) == (
        falcon.HTTP_200, b'{"ok": true}')
    span = only_span(tracer)
    environ_span, context = seen[-1]
    assert environ_span is span
    if in_context:
        assert context['span'] is span
    assert span.tags['http.status_code'] == 200


# --------------------------------------------------------------------------- chaining

@pytest.mark.skipif(not HAS_REPORTER, reason='App.set_error_reporter is Falcon 4.4+')
@pytest.mark.parametrize('path, handled_kind', [
    pytest.param('/boom', ('ZeroDivisionError', True), id='unhandled-exception'),
    pytest.param('/errors/503', ('HTTPServiceUnavailable', True), id='http-error'),
])
def test_app_error_reporter_set_before_wrapping_still_reports(tracer, path, handled_kind):
    """The app's own reporter (an error tracker) keeps seeing every error once wrapped."""
    reports = []
    app = make_app(tracer)
    app.set_error_reporter(
        lambda req, error, params, handled: reports.append((type(error).__name__, handled)))
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer))
    assert client.simulate_get(path).status_code >= 500
    assert reports == [handled_kind]
    span = only_span(tracer)
    assert span.tags['error'] is True
    if path == '/boom':
        assert span.logs[0].key_values['error.kind'] == 'ZeroDivisionError'


def test_app_exception_handler_registered_before_wrapping_is_kept(tracer):
    """An ``Exception`` handler the app had keeps answering (and, before Falcon 4.4, the
    exception is still recorded through our handler that calls it)."""
    def handle(req, resp, ex, params):
        resp.status = falcon.HTTP_503
        resp.media = {'sorry': type(ex).__name__}
    app = make_app(tracer)
    app.add_error_handler(Exception, handle)
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer))
    result = client.simulate_get('/boom')
    assert (result.status_code, result.json) == (503, {'sorry': 'ZeroDivisionError'})
    span = only_span(tracer)
    assert span.tags['error'] is True
    assert span.logs[0].key_values['error.kind'] == 'ZeroDivisionError'


def test_an_exception_an_error_handler_re_raises_is_logged_once(tracer):
    """Falcon reports it (unhandled) and it leaves the app: one error log, not two."""
    def reraise(req, resp, ex, params):
        raise ex
    app = make_app(tracer)
    app.add_error_handler(ZeroDivisionError, reraise)
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer))
    with pytest.raises(ZeroDivisionError):
        client.simulate_get('/boom')
    span = only_span(tracer)
    assert [log.key_values['error.kind'] for log in span.logs] == ['ZeroDivisionError']
    assert span.tags['error'] is True


@pytest.mark.parametrize('ours', [pytest.param(True, id='our-tracer'),
                                  pytest.param(False, id='mock-tracer')])
@pytest.mark.parametrize('own_tags, expected', [
    pytest.param({}, {'falcon.resource': 'Resource', 'falcon.responder': 'on_get'},
                 id='component-tags'),
    pytest.param({'falcon.responder': 'custom'},
                 {'falcon.resource': 'Resource', 'falcon.responder': 'custom'},
                 id='the-app-tag-wins'),
])
def test_responder_tags_and_the_apps_own(tracer, ours, own_tags, expected):
    """The component's tags are on the span; a tag of the same name the responder set
    itself is kept (on our spans they are added when the span finishes)."""
    class Resource:
        def on_get(self, req, resp):
            for key, value in own_tags.items():
                req.context.span.set_tag(key, value)
            resp.media = {'ok': True}
    if ours:
        tracer, reporter = make_tracer()
    app = falcon.App()
    app.add_route('/', Resource())
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer))
    assert client.simulate_get('/').status_code == 200
    (span,) = reporter.spans if ours else tracer.finished_spans()
    expected = {key: Resource.__qualname__ if value == 'Resource' else value
                for key, value in expected.items()}
    assert {key: span.tags[key] for key in expected} == expected


@pytest.mark.parametrize('semconv', ['', 'stable'], ids=['opentracing-names', 'stable-names'])
def test_route_tags_read_back_from_a_field_span_are_cut_to_the_value_limit(semconv):
    """``span.tags`` of the server span gives the responder tags cut as set_tag cuts,
    like the encoders write them."""
    class AResourceWhoseClassNameIsLongerThanTheLimit:
        def on_get(self, req, resp):
            resp.media = {'ok': True}
    tracer, reporter = make_tracer(span_limits=SpanLimits(value_length=12))
    app = falcon.App()
    app.add_route('/', AResourceWhoseClassNameIsLongerThanTheLimit())
    options = {'http_semconv': semconv} if semconv else {}
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer, **options))
    assert client.simulate_get('/').status_code == 200
    (span,) = reporter.spans
    assert type(span).__name__ == ('StableServerSpan' if semconv else 'ServerSpan')
    assert span.tags['falcon.resource'] == \
        AResourceWhoseClassNameIsLongerThanTheLimit.__qualname__[:12]
    assert span.tags['falcon.responder'] == 'on_get'


class _LeakyResource:
    def on_get(self, req, resp):
        raise ValueError('GET https://billing.internal/pay?acct=7&token=S3CR3T failed')


@pytest.mark.parametrize('own_component', [False, True], ids=['wrapped', 'own-component-too'])
def test_a_falcon_exception_is_redacted_with_the_wrappers_names(tracer, own_component):
    """The exception Falcon reports is redacted with the wrapper's configured names, also
    when the app already had a TracingComponent of its own (default names): wrap()'s is
    added after it, and the last component to act gives the names."""
    app = falcon.App(middleware=[TracingComponent()] if own_component else [])
    app.add_route('/pay', _LeakyResource())
    client = falcon.testing.TestClient(TracingMiddleware(app, tracer, redact_query=('acct',)))
    assert client.simulate_get('/pay').status_code == 500
    span = only_span(tracer)
    text = repr([log.key_values for log in span.logs])
    assert 'billing.internal' in text and 'REDACTED' in text
    assert [value for value in ('acct=7', 'S3CR3T') if value in text] == ['S3CR3T']
