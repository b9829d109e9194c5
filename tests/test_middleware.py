"""TracingMiddleware against opentracing's MockTracer: the WSGI contract, tracer-agnostic."""

from __future__ import annotations

import logging
import wsgiref.util
import wsgiref.validate

import opentracing
import pytest
from opentracing import Format

from falcon_tracing_wsgi.middleware import (
    ENVIRON_INCOMING, ENVIRON_ROUTE, ENVIRON_SPAN, TracingMiddleware, abort_in_flight,
)

from . import apps
from .harness import call, make_environ


def only_span(tracer):
    spans = tracer.finished_spans()
    assert len(spans) == 1, spans
    return spans[0]


def error_events(span):
    return [log.key_values for log in span.logs if log.key_values.get('event') == 'error']


# --------------------------------------------------------------------------- outcomes

@pytest.mark.parametrize('app, status, error, body', [
    pytest.param(apps.list_body, 200, False, b'hello world', id='list-body'),
    pytest.param(apps.generator_body, 200, False, b'chunk0 chunk1 chunk2 ', id='generator'),
    pytest.param(apps.closing_body, 200, False, b'abc', id='closable-iterator'),
    pytest.param(apps.empty_body, 204, False, b'', id='empty-body'),
    pytest.param(apps.write_app, 200, False, b'', id='write-callable'),
    pytest.param(apps.status_app('404 Not Found'), 404, False, b'404 Not Found', id='4xx'),
    pytest.param(apps.status_app('503 Service Unavailable'), 503, True,
                 b'503 Service Unavailable', id='5xx'),
    pytest.param(apps.exc_info_app, 500, True, b'sorry', id='exc-info'),
])
def test_one_server_span_per_request_with_integer_status(tracer, app, status, error, body):
    """Every request yields one finished server span with the integer status code."""
    outcome = call(TracingMiddleware(app, tracer), make_environ('/users/42'))
    assert outcome.body == body
    span = only_span(tracer)
    assert span.operation_name == 'GET'
    assert span.tags['span.kind'] == 'server'
    assert span.tags['http.method'] == 'GET'
    assert span.tags['http.status_code'] == status
    assert span.tags.get('error', False) is error
    assert 'http.aborted' not in span.tags


def test_exc_info_is_recorded(tracer):
    """An exc_info passed to start_response is recorded as an error event."""
    call(TracingMiddleware(apps.exc_info_app, tracer))
    (event,) = error_events(only_span(tracer))
    assert event['error.kind'] == 'AppError'
    assert event['message'] == 'handled by the app'
    assert 'Traceback' in event['stack']


@pytest.mark.parametrize('app, status', [
    pytest.param(apps.raise_before_start_response, 500, id='before-start-response'),
    # The server answers 500 whatever status was passed: no header was sent yet.
    pytest.param(apps.raise_after_start_response, 500, id='after-start-response'),
])
def test_app_exception_is_recorded_and_reraised_unchanged(tracer, app, status):
    """An app that raises before returning finishes the span with the status the server
    sends for it."""
    with pytest.raises(apps.AppError) as raised:
        call(TracingMiddleware(app, tracer))
    span = only_span(tracer)
    assert span.tags['http.status_code'] == status
    assert span.tags['error'] is True
    (event,) = error_events(span)
    assert event['error.kind'] == 'AppError'
    assert event['message'] == str(raised.value)
    assert 'Traceback' in event['stack']


def test_exception_mid_body_is_recorded_reraised_and_span_finished_on_close(tracer):
    wrapped = TracingMiddleware(apps.raise_mid_body, tracer)
    environ = make_environ()
    result = wrapped(environ, lambda status, headers, exc_info=None: None)
    iterator = iter(result)
    assert next(iterator) == b'first'
    with pytest.raises(apps.AppError, match='mid body'):
        next(iterator)
    assert tracer.finished_spans() == []
    result.close()
    span = only_span(tracer)
    assert span.tags['error'] is True
    assert error_events(span)[0]['message'] == 'mid body'


# --------------------------------------------------------------------------- lifecycle

def test_streamed_span_lasts_until_close(tracer):
    """The span is finished by close(), after the last chunk, not when the app returns."""
    environ = make_environ()
    result = TracingMiddleware(apps.generator_body, tracer)(environ, lambda *a: None)
    assert tracer.finished_spans() == []
    chunks = list(result)
    assert len(chunks) == 3
    assert tracer.finished_spans() == []
    result.close()
    assert only_span(tracer).tags['http.response_size'] == len(b''.join(chunks))


def test_close_before_iteration_finishes_and_tags_aborted(tracer):
    """A response closed before its body was sent still finishes, tagged aborted."""
    environ = make_environ()
    result = TracingMiddleware(apps.closing_body, tracer)(environ, lambda *a: None)
    result.close()
    (inner,) = environ['test.iterables']
    assert inner.closed == 1
    span = only_span(tracer)
    assert span.tags['http.aborted'] is True


def test_close_is_forwarded_once_and_span_finished_once(tracer):
    """Closing twice closes the app's iterable and finishes the span exactly once."""
    environ = make_environ()
    result = TracingMiddleware(apps.closing_body, tracer)(environ, lambda *a: None)
    assert b''.join(result) == b'abc'
    result.close()
    result.close()
    assert len(tracer.finished_spans()) == 1
    assert environ['test.iterables'][0].closed == 1


def test_write_callable_is_the_servers_and_bytes_are_counted(tracer):
    outcome = call(TracingMiddleware(apps.write_app, tracer))
    assert outcome.written == [b'written ', b'directly']
    assert only_span(tracer).tags['http.response_size'] == len(b'written directly')


def test_file_wrapper_keeps_the_servers_wrapper_class(tracer):
    """A wsgi.file_wrapper result stays an instance of the server's class (sendfile path),
    and the span is finished when the server closes it."""
    environ = make_environ()
    result = TracingMiddleware(apps.file_wrapper_app, tracer)(environ, lambda *a: None)
    assert type(result) is wsgiref.util.FileWrapper
    assert tracer.finished_spans() == []
    assert b''.join(result) == b'file contents here'
    result.close()
    assert environ['test.file'].closed
    span = only_span(tracer)
    assert span.tags['http.status_code'] == 200
    assert 'http.aborted' not in span.tags


def test_span_is_active_in_app_and_chunks_and_restored_after(tracer):
    environ = make_environ(**{'test.tracer': tracer, 'test.seen': []})
    outcome = call(TracingMiddleware(apps.generator_body, tracer), environ)
    assert outcome.body
    span = only_span(tracer)
    assert [label for label, _ in environ['test.seen']] == ['app', 'chunk0', 'chunk1',
                                                            'chunk2']
    assert all(active is span for _, active in environ['test.seen'])
    assert tracer.active_span is None


def test_close_runs_with_the_span_active(tracer):
    environ = make_environ(**{'test.tracer': tracer, 'test.seen': []})
    call(TracingMiddleware(apps.closing_body, tracer), environ)
    (label, active), = environ['test.seen']
    assert label == 'close' and active is only_span(tracer)


def test_server_span_ignores_a_leaked_active_span(tracer):
    """A span left active on the thread never becomes the parent of a server span."""
    with tracer.start_active_span('leaked'):
        call(TracingMiddleware(apps.list_body, tracer))
    server = [s for s in tracer.finished_spans() if s.operation_name == 'GET'][0]
    assert server.parent_id is None


def test_pep3333_validator_on_both_sides(tracer):
    """wsgiref.validate accepts the middleware as an app and as the app's server."""
    for app in (apps.list_body, apps.generator_body, apps.closing_body, apps.write_app,
                apps.empty_body):
        wrapped = wsgiref.validate.validator(
            TracingMiddleware(wsgiref.validate.validator(app), tracer))
        call(wrapped)
    assert len(tracer.finished_spans()) == 5


# --------------------------------------------------------------------------- context

def test_incoming_context_is_the_parent(tracer):
    caller = tracer.start_span('caller')
    headers = {}
    tracer.inject(caller.context, Format.HTTP_HEADERS, headers)
    call(TracingMiddleware(apps.list_body, tracer), make_environ(headers=headers))
    server = only_span(tracer)
    assert server.context.trace_id == caller.context.trace_id
    assert server.parent_id == caller.context.span_id


@pytest.mark.parametrize('headers', [
    pytest.param({'ot-tracer-traceid': 'zz', 'ot-tracer-spanid': '1'}, id='non-hex'),
    pytest.param({'ot-tracer-traceid': '1'}, id='incomplete'),
    pytest.param({'ot-tracer-traceid': '\r\n', 'ot-tracer-spanid': '\x00'}, id='control'),
])
def test_malformed_context_starts_a_new_root(tracer, headers):
    outcome = call(TracingMiddleware(apps.list_body, tracer), make_environ(headers=headers))
    assert outcome.status == '200 OK'
    assert only_span(tracer).parent_id is None


def test_server_context_is_injected_into_the_environ(tracer):
    """Code that forwards the incoming headers continues the trace from the server span."""
    caller = tracer.start_span('caller')
    headers = {}
    tracer.inject(caller.context, Format.HTTP_HEADERS, headers)
    environ = make_environ(headers={**headers, 'traceparent': 'stale'})
    call(TracingMiddleware(apps.echo_environ, tracer), environ)
    server = only_span(tracer)
    seen = environ['test.app_environ']
    assert seen[ENVIRON_SPAN] is server
    forwarded = {key[5:].lower().replace('_', '-'): value for key, value in seen.items()
                 if key.startswith('HTTP_OT_')}
    assert tracer.extract(Format.HTTP_HEADERS, forwarded).span_id == server.context.span_id
    incoming = seen[ENVIRON_INCOMING]
    assert incoming['HTTP_OT_TRACER_SPANID'] == headers['ot-tracer-spanid']
    assert incoming['HTTP_TRACEPARENT'] == 'stale'
    assert 'HTTP_TRACEPARENT' not in seen


def test_tracer_none_uses_the_global_tracer_at_request_time(tracer):
    wrapped = TracingMiddleware(apps.list_body)
    opentracing.set_global_tracer(tracer)  # installed after the wrapper was built
    call(wrapped)
    assert len(tracer.finished_spans()) == 1


# --------------------------------------------------------------------------- tags

@pytest.mark.parametrize('query, expected', [
    pytest.param('', 'http://127.0.0.1/p', id='no-query'),
    pytest.param('a=1&b=2', 'http://127.0.0.1/p?a=1&b=2', id='plain'),
    pytest.param('token=abc&x=1', 'http://127.0.0.1/p?token=REDACTED&x=1', id='token'),
    pytest.param('X-Amz-Signature=s&Password=p&api_key=k&q=ok',
                 'http://127.0.0.1/p?X-Amz-Signature=REDACTED&Password=REDACTED'
                 '&api_key=REDACTED&q=ok', id='case-insensitive'),
    pytest.param('access_token', 'http://127.0.0.1/p?access_token', id='name-without-value'),
    pytest.param('access%5Ftoken=abc&a+key=1', 'http://127.0.0.1/p?access%5Ftoken=REDACTED'
                 '&a+key=REDACTED', id='percent-encoded-name'),
])
def test_http_url_redacts_secret_query_values(tracer, query, expected):
    call(TracingMiddleware(apps.list_body, tracer),
         make_environ('/p', query=query, HTTP_HOST='127.0.0.1'))
    assert only_span(tracer).tags['http.url'] == expected


def test_record_query_false_drops_the_query(tracer):
    call(TracingMiddleware(apps.list_body, tracer, record_query=False),
         make_environ('/p', query='a=1', HTTP_HOST='h'))
    assert only_span(tracer).tags['http.url'] == 'http://h/p'


@pytest.mark.parametrize('addr, tag', [
    pytest.param('10.0.0.7', 'peer.ipv4', id='ipv4'),
    pytest.param('2001:db8::1', 'peer.ipv6', id='ipv6'),
])
def test_peer_tags_from_remote_addr(tracer, addr, tag):
    call(TracingMiddleware(apps.list_body, tracer),
         make_environ(REMOTE_ADDR=addr, REMOTE_PORT='4242'))
    span = only_span(tracer)
    assert span.tags[tag] == addr
    assert span.tags['peer.port'] == 4242


def test_captured_headers_are_allow_listed_and_secrets_redacted(tracer):
    def app(environ, start_response):
        start_response('200 OK', [('X-Request-Id', 'r1'), ('Set-Cookie', 's=1'),
                                  ('X-Other', 'no')])
        return [b'']
    wrapped = TracingMiddleware(app, tracer,
                                capture_request_headers='User-Agent,Authorization,Cookie',
                                capture_response_headers=['x-request-id', 'set-cookie'])
    call(wrapped, make_environ(headers={'User-Agent': 'ua', 'Authorization': 'Bearer x',
                                        'Cookie': 'c=1', 'X-Secret': 'nope'}))
    tags = only_span(tracer).tags
    assert tags['http.request.header.user-agent'] == 'ua'
    assert tags['http.request.header.authorization'] == 'REDACTED'
    assert tags['http.request.header.cookie'] == 'REDACTED'
    assert tags['http.response.header.x-request-id'] == 'r1'
    assert tags['http.response.header.set-cookie'] == 'REDACTED'
    assert not any('x-secret' in key or 'x-other' in key for key in tags)


def test_response_trace_header(tracer):
    """An int trace id (MockTracer counts from 1) keeps the width backends show: 16 digits."""
    outcome = call(TracingMiddleware(apps.list_body, tracer,
                                     response_trace_header='X-Trace-Id'))
    span = only_span(tracer)
    assert span.context.trace_id < 1 << 60  # so an unpadded id would be shorter
    assert ('X-Trace-Id', f'{span.context.trace_id:016x}') in outcome.headers


# --------------------------------------------------------------------------- naming

def test_route_from_environ_names_the_span(tracer):
    def app(environ, start_response):
        environ[ENVIRON_ROUTE] = '/users/<int:id>'
        return apps.list_body(environ, start_response)
    call(TracingMiddleware(app, tracer), make_environ('/users/42', method='POST'))
    span = only_span(tracer)
    assert span.operation_name == 'POST /users/<int:id>'
    assert span.tags['http.route'] == '/users/<int:id>'


def test_operation_name_option(tracer):
    wrapped = TracingMiddleware(apps.list_body, tracer,
                                operation_name=lambda environ: '/items/{id}')
    call(wrapped, make_environ('/items/9'))
    assert only_span(tracer).operation_name == 'GET /items/{id}'


_LONG_ROUTE = '/r/' + 'x' * 40


@pytest.mark.parametrize('own_tracer', [
    pytest.param(True, id='own-tracer-field-spans'),
    pytest.param(False, id='mock-tracer'),
])
def test_span_names_stay_right_across_routes_of_one_middleware(monkeypatch, tracer,
                                                               own_tracer):
    """The name and the cut route are kept per (method, route): repeated, new,
    unhashable and equal-but-different routes, a route past the value limit and a full cache all give each
    request its own right name and route."""
    import falcon_tracing_wsgi.middleware as middleware_module
    from falcon_tracing_wsgi.config import TracingConfig
    from falcon_tracing_wsgi.testing import make_tracer
    from falcon_tracing_wsgi.tracer.limits import SpanLimits

    monkeypatch.setattr(middleware_module, '_ROUTE_NAMES_SIZE', 3)
    reporter = None
    if own_tracer:
        tracer, reporter = make_tracer(span_limits=SpanLimits(value_length=30))

    def app(environ, start_response):
        route = environ.get('HTTP_X_ROUTE')
        environ[ENVIRON_ROUTE] = {'list': ['unhashable'], 'one': 1, 'true': True}.get(
            route, route)
        return apps.list_body(environ, start_response)

    wrapped = TracingMiddleware(app, tracer,
                                config=TracingConfig(attribute_value_length_limit=20))
    requests = [  # (method, route, expected name, expected http.route)
        ('GET', '/a', 'GET /a', '/a'),
        ('POST', '/a', 'POST /a', '/a'),
        ('GET', '/a', 'GET /a', '/a'),
        ('GET', '/b', 'GET /b', '/b'),
        ('GET', '/c', 'GET /c', '/c'),
        ('GET', '/d', 'GET /d', '/d'),  # the cache was full: cleared, then kept
        ('POST', '/a', 'POST /a', '/a'),
        ('GET', 'list', "GET ['unhashable']", ['unhashable']),
        ('GET', 'one', 'GET 1', 1),
        ('GET', 'true', 'GET True', True),  # equal to 1 as a key: never cached
        # the tracer's limit (30) cuts our own span's name; the route is cut to 20
        ('GET', _LONG_ROUTE, ('GET ' + _LONG_ROUTE)[:30] if own_tracer
         else 'GET ' + _LONG_ROUTE, _LONG_ROUTE[:20]),
        ('GET', _LONG_ROUTE, ('GET ' + _LONG_ROUTE)[:30] if own_tracer
         else 'GET ' + _LONG_ROUTE, _LONG_ROUTE[:20]),
    ]
    for method, route, _, _ in requests:
        call(wrapped, make_environ('/p', method=method, headers={'X-Route': route}))
    spans = reporter.spans if own_tracer else tracer.finished_spans()
    got = [(span.operation_name, span.tags.get('http.route')) for span in spans]
    assert got == [(name, route) for _, _, name, route in requests]
    assert len(wrapped._route_names) <= 3


def test_raw_path_is_never_the_name(tracer):
    call(TracingMiddleware(apps.list_body, tracer), make_environ('/users/42'))
    assert only_span(tracer).operation_name == 'GET'


# --------------------------------------------------------------------------- options

@pytest.mark.parametrize('rules, method, path, traced', [
    pytest.param('GET /healthz', 'GET', '/healthz', False, id='exact'),
    pytest.param('GET /healthz', 'POST', '/healthz', True, id='other-method'),
    pytest.param('GET /healthz', 'GET', '/healthz/deep', True, id='anchored'),
    pytest.param('/healthz', 'HEAD', '/healthz', False, id='any-method'),
    pytest.param('/static/*', 'GET', '/static/app.js', False, id='prefix'),
    pytest.param('/static/*', 'GET', '/api/static/app.js', True, id='prefix-anchored'),
    pytest.param('OPTIONS /*', 'OPTIONS', '/anything', False, id='method-prefix'),
    pytest.param('OPTIONS /*', 'GET', '/anything', True, id='method-prefix-other-method'),
    pytest.param('/static/*', 'get', '/static/app.js', True,
                 id='any-method-prefix-needs-a-capitals-method'),
    pytest.param('/healthz', 'get', '/healthz', False, id='any-method-exact-any-text'),
    pytest.param('/static/*', 'GET', '/static', True, id='prefix-needs-the-slash'),
    pytest.param('/*', 'GET', '', False, id='empty-path-is-root'),
    pytest.param('GET /a,POST /b/*,/c', 'POST', '/b/x', False, id='several-rules'),
    pytest.param('GET /a,POST /b/*,/c', 'GET', '/b/x', True, id='several-rules-traced'),
    pytest.param('GET /a,POST /b/*,/c', 'PATCH', '/c', False, id='several-rules-any'),
])
def test_exclusion_rules(tracer, rules, method, path, traced):
    outcome = call(TracingMiddleware(apps.list_body, tracer, exclude=rules),
                   make_environ(path, method=method))
    assert outcome.body == b'hello world'
    assert len(tracer.finished_spans()) == (1 if traced else 0)


def test_exclusion_holds_for_any_number_of_methods(tracer):
    """Methods are client-controlled: past the per-method cache's bound, the rules still
    apply (computed per request instead of cached)."""
    wrapped = TracingMiddleware(apps.list_body, tracer, exclude='/static/*,GET /healthz')
    for number in range(100):
        method = 'M' + 'X' * number
        assert call(wrapped, make_environ('/static/a', method=method)).body == b'hello world'
    assert tracer.finished_spans() == []
    call(wrapped, make_environ('/healthz'))
    call(wrapped, make_environ('/healthz', method='MXX'))
    assert [span.operation_name for span in tracer.finished_spans()] == ['MXX']


def test_otel_style_exclude_patterns(tracer):
    wrapped = TracingMiddleware(apps.list_body, tracer, exclude_patterns='health,^/ping$')
    for path in ('/healthz', '/api/health/x', '/ping'):
        call(wrapped, make_environ(path))
    call(wrapped, make_environ('/pingpong'))
    assert len(tracer.finished_spans()) == 1


def test_hooks_are_called_and_a_failing_hook_does_not_break_the_request(tracer, caplog):
    calls = []

    def request_hook(span, environ):
        calls.append(('request', environ['PATH_INFO']))
        raise RuntimeError('hook bug')

    def response_hook(span, environ, status, headers):
        calls.append(('response', status))
    wrapped = TracingMiddleware(apps.list_body, tracer, request_hook=request_hook,
                                response_hook=response_hook)
    with caplog.at_level(logging.WARNING):
        outcome = call(wrapped, make_environ('/x'))
    assert outcome.body == b'hello world'
    assert calls == [('request', '/x'), ('response', '200 OK')]
    assert 'hook bug' in caplog.text


def test_disabled_passes_straight_through(tracer):
    wrapped = TracingMiddleware(apps.list_body, tracer, enabled=False)
    outcome = call(wrapped)
    assert outcome.result == [b'hello ', b'world']
    assert tracer.finished_spans() == []


def test_tracer_failure_never_breaks_the_request(caplog):
    class BrokenTracer(opentracing.Tracer):
        def start_span(self, *args, **kwargs):
            raise RuntimeError('tracer bug')
    with caplog.at_level(logging.WARNING):
        outcome = call(TracingMiddleware(apps.list_body, BrokenTracer()))
    assert outcome.body == b'hello world'
    assert 'tracer bug' in caplog.text


def test_noop_tracer_works():
    outcome = call(TracingMiddleware(apps.generator_body, opentracing.Tracer()))
    assert outcome.body == b'chunk0 chunk1 chunk2 '


def test_not_callable_app_is_rejected():
    with pytest.raises(TypeError, match='WSGI callable'):
        TracingMiddleware(object())


def test_abort_in_flight_finishes_unfinished_spans(tracer):
    environ = make_environ()
    result = TracingMiddleware(apps.generator_body, tracer)(environ, lambda *a: None)
    assert abort_in_flight('worker timeout') == 1
    span = only_span(tracer)
    assert span.tags['error'] is True
    assert span.tags['http.aborted.reason'] == 'worker timeout'
    result.close()
    assert len(tracer.finished_spans()) == 1
    assert abort_in_flight('again') == 0


def test_exception_after_abort_is_not_logged_on_the_finished_span(tracer):
    """A worker abort finishes the span; the SystemExit that follows adds nothing to it."""
    def app(environ, start_response):
        abort_in_flight('worker timeout')
        raise SystemExit(1)
    with pytest.raises(SystemExit):
        call(TracingMiddleware(app, tracer))
    span = only_span(tracer)
    assert [log.key_values['error.kind'] for log in span.logs] == ['WorkerAbort']
    # A killed request: error and aborted, no status (the span cannot know one).
    assert 'http.status_code' not in span.tags
    assert span.tags['http.aborted'] is True


# --------------------------------------------------------------------------- privacy

@pytest.mark.parametrize('where', ['app', 'exc_info', 'body'])
@pytest.mark.parametrize('options, hidden', [
    pytest.param({}, ('S3CR3T',), id='default-names'),
    pytest.param({'redact_query': ('acct', 'token')}, ('S3CR3T', 'acct=7'),
                 id='configured-names'),
])
def test_urls_in_recorded_exceptions_are_redacted_like_http_url(tracer, where, options,
                                                                 hidden):
    wrapped = TracingMiddleware(apps.raise_with_url(where), tracer, **options)
    try:
        call(wrapped, make_environ(query='acct=7&token=S3CR3T'))
    except apps.AppError:
        pass
    span = only_span(tracer)
    (event,) = error_events(span)
    assert 'billing.internal' in event['message'] and 'REDACTED' in event['stack']
    text = repr(span.tags) + repr(event)
    assert [value for value in hidden if value in text] == []


def test_status_lines_are_parsed_once_and_the_cache_stays_bounded():
    """Every made-up status line gives its own code; the parsed-line cache is bounded."""
    from falcon_tracing_wsgi import _wsgi
    from falcon_tracing_wsgi.propagation import build_propagator
    from falcon_tracing_wsgi.testing import InMemoryReporter
    from falcon_tracing_wsgi.tracer import ConstSampler, Tracer

    reporter = InMemoryReporter()
    ours = Tracer(reporter, ConstSampler(True), build_propagator(('b3',)))
    lines = [f'{200 + n % 300} Reason {n}' for n in range(_wsgi._STATUS_CODES_SIZE + 50)]
    lines += ['20x Odd', '', 'OK']  # no integer code: 0, no tag
    for line in lines:
        call(TracingMiddleware(apps.status_app(line), ours), make_environ('/'))
    codes = [span.tags.get('http.status_code') for span in reporter.spans]
    assert codes == [int(line[:3]) for line in lines[:-3]] + [None, None, None]
    assert len(_wsgi._STATUS_CODES) <= _wsgi._STATUS_CODES_SIZE
