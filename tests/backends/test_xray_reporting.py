"""X-Ray reporting: X-Ray ids, segment documents, the UDP sender, and wrap() end to end.

Every datagram asserted on here went through a real UDP socket on 127.0.0.1 and was
checked by :func:`tests.backends.xray_daemon.parse_datagram` against the daemon protocol
and the segment document reference.
"""

from __future__ import annotations

import json
import os
import time
import traceback

import falcon
import falcon.testing
import opentracing
import pytest

from falcon_tracing_wsgi import TracingConfig, wrap
from falcon_tracing_wsgi._types import SendError
from falcon_tracing_wsgi.bootstrap import build_reporter, build_tracer
from falcon_tracing_wsgi.outbound import finish_client_span, inject_headers, start_client_span
from falcon_tracing_wsgi.testing import InMemoryReporter, make_tracer
from falcon_tracing_wsgi.tracer.limits import SpanLimits
from falcon_tracing_wsgi.tracer.ids import XRayIdGenerator, new_xray_trace_id
from falcon_tracing_wsgi.export.pipeline import BatchReporter
from falcon_tracing_wsgi.export.udp import UdpSender
from falcon_tracing_wsgi.export.xray import DAEMON_HEADER, MAX_DATAGRAM_BYTES, SegmentEncoder

from .xray_daemon import DaemonListener, check_document, parse_datagram

ROOT = '1-5759e988-bd862e3fe1be46a994272793'
CALLER = '53995c3f42cd8ad8'


# --- X-Ray ids ------------------------------------------------------------------------

def test_xray_trace_ids_start_with_the_epoch_seconds():
    before = int(time.time())
    ids = {new_xray_trace_id() for _ in range(1000)}
    after = int(time.time())
    assert len(ids) == 1000
    for trace_id in ids:
        assert len(trace_id) == 32 and trace_id == trace_id.lower()
        assert before <= int(trace_id[:8], 16) <= after
    generator = XRayIdGenerator()
    assert len(generator.span_id()) == 16 and generator.trace_id() != generator.trace_id()


@pytest.mark.parametrize('env, expected', [
    pytest.param({}, False, id='default-off'),
    pytest.param({'FALCON_TRACING_PROPAGATION': 'b3,xray'}, True, id='xray-propagation'),
    pytest.param({'OTEL_PROPAGATORS': 'tracecontext,xray'}, True, id='otel-xray-propagator'),
    pytest.param({'FALCON_TRACING_REPORTER': 'xray'}, True, id='xray-reporter'),
    pytest.param({'FALCON_TRACING_REPORTER': 'xray', 'FALCON_TRACING_XRAY_IDS': 'false'},
                 False, id='override-off'),
    pytest.param({'FALCON_TRACING_XRAY_IDS': 'true'}, True, id='override-on'),
    pytest.param({'FALCON_TRACING_XRAY_IDS': 'auto', 'FALCON_TRACING_PROPAGATION': 'xray'},
                 True, id='explicit-auto'),
])
def test_xray_ids_switch_on_with_xray_in_use(env, expected):
    config = TracingConfig.from_env(env)
    assert config.effective_xray_ids is expected
    tracer = build_tracer(config, reporter=InMemoryReporter())
    now = int(time.time())
    trace_id = tracer.start_span('x').context.trace_id
    assert (abs(int(trace_id[:8], 16) - now) <= 2) is expected


@pytest.mark.parametrize('env, address', [
    pytest.param({}, '127.0.0.1:2000', id='default'),
    pytest.param({'AWS_XRAY_DAEMON_ADDRESS': '10.0.0.5:3000'}, '10.0.0.5:3000', id='aws-var'),
    pytest.param({'AWS_XRAY_DAEMON_ADDRESS': 'tcp:10.0.0.5:2000 udp:10.0.0.6:2001'},
                 '10.0.0.6:2001', id='aws-two-forms'),
    pytest.param({'AWS_XRAY_DAEMON_ADDRESS': '10.0.0.5:3000',
                  'FALCON_TRACING_XRAY_DAEMON_ADDRESS': 'xray-daemon:2000'},
                 'xray-daemon:2000', id='ours-first'),
    pytest.param({'FALCON_TRACING_XRAY_DAEMON_ADDRESS': '[::1]:2000'}, '[::1]:2000',
                 id='ipv6'),
])
def test_daemon_address(env, address):
    config = TracingConfig.from_env(env)
    assert config.xray_daemon_address == address
    reporter = build_reporter(config.replace(reporter='xray'))
    assert isinstance(reporter, BatchReporter)
    assert repr(reporter._sender) == f'UdpSender({address})'  # noqa: SLF001


# --- segment documents ----------------------------------------------------------------

ENCODER = SegmentEncoder('shop', tags=[('env', 'prod'), ('team.name', 'core')],
                         working_directory='/srv/app', sdk_version='9.9')


def finished(name='GET /users/{user_id}', *, parent=True, tags=None, logs=(), kind='server',
             span_limits=SpanLimits()):
    """One finished span of our tracer, child of the X-Ray caller when ``parent``."""
    tracer, reporter = make_tracer(('xray',), id_generator=XRayIdGenerator(),
                                   span_limits=span_limits)
    child_of = tracer.extract(opentracing.Format.HTTP_HEADERS, {
        'x-amzn-trace-id': f'Root={ROOT};Parent={CALLER};Sampled=1'}) if parent else None
    all_tags = {'span.kind': kind} if kind else {}
    all_tags.update(tags or {})
    span = tracer.start_span(name, child_of=child_of, tags=all_tags)
    for fields in logs:
        span.log_kv(fields)
    span.finish()
    (done,) = reporter.spans
    return done


class _NoTruth:
    """A value whose comparison has no truth value (as a numpy array's)."""

    def __eq__(self, other):
        return self

    def __bool__(self):
        raise ValueError('ambiguous')

    __hash__ = None

    def __str__(self):
        return 'no-truth'


def test_a_log_value_without_a_truth_value_does_not_lose_the_span():
    span = finished(logs=[{'event': _NoTruth(), 'detail': 'x'}])
    assert ENCODER.encode(span) is not None


def document(span, encoder=ENCODER):
    text = encoder.encode(span)
    assert text is not None and text.startswith(DAEMON_HEADER)
    result = json.loads(text[len(DAEMON_HEADER):])
    check_document(result)
    return result


def test_a_server_span_is_a_segment_of_the_callers_trace():
    span = finished(tags={'http.method': 'GET', 'http.url': 'http://shop/users/7?q=1',
                          'http.status_code': 200, 'peer.ipv4': '10.1.2.3',
                          'http.request.header.user-agent': 'curl/8',
                          'http.response_size': 42, 'component': 'falcon',
                          'http.route': '/users/{user_id}'},
                    logs=[{'event': 'cache.miss', 'key': 'u7'}])
    doc = document(span)
    assert doc['name'] == 'shop' and doc['id'] == span.context.span_id
    assert doc['trace_id'] == ROOT and doc['parent_id'] == CALLER
    assert doc['start_time'] == span.start_time
    assert doc['end_time'] == pytest.approx(span.start_time + span.duration)
    assert doc['http'] == {
        'request': {'method': 'GET', 'url': 'http://shop/users/7?q=1', 'client_ip': '10.1.2.3',
                    'user_agent': 'curl/8'},
        'response': {'status': 200, 'content_length': 42}}
    assert doc['annotations'] == {'env': 'prod', 'team_name': 'core',
                                  'operation': 'GET /users/{user_id}'}
    assert doc['aws'] == {'xray': {'sdk': 'falcon-tracing-wsgi for Python', 'sdk_version': '9.9'}}
    metadata = doc['metadata']['opentracing']
    assert metadata['tags'] == {'component': 'falcon', 'http.route': '/users/{user_id}'}
    assert [(log['event'], log['key']) for log in metadata['logs']] == [('cache.miss', 'u7')]
    assert not {'error', 'fault', 'throttle', 'cause', 'type', 'namespace'} & set(doc)


@pytest.mark.parametrize('kind, parent, tags, expected', [
    pytest.param('server', False, {}, {'name': 'shop'}, id='server-root'),
    pytest.param('consumer', True, {}, {'name': 'shop', 'parent_id': CALLER},
                 id='consumer-segment'),
    pytest.param(None, False, {}, {'name': 'shop'}, id='internal-root-segment'),
    pytest.param(None, True, {}, {'name': 'GET /users/_user_id_', 'type': 'subsegment',
                                  'parent_id': CALLER}, id='internal-child-subsegment'),
    pytest.param('client', True, {'http.url': 'https://api.example.com:8443/v1?k=v'},
                 {'name': 'api.example.com', 'type': 'subsegment', 'namespace': 'remote',
                  'parent_id': CALLER}, id='client-named-after-url-host'),
    pytest.param('client', True, {'peer.service': 'billing', 'http.url': 'http://10.0.0.9/'},
                 {'name': 'billing', 'namespace': 'remote'}, id='client-peer-service-first'),
    pytest.param('client', True, {'http.url': 'http://[::1]:8080/x'},
                 {'name': '::1', 'namespace': 'remote'}, id='client-ipv6-url'),
    pytest.param('client', True, {'peer.hostname': 'db.internal'},
                 {'name': 'db.internal', 'namespace': 'remote'}, id='client-peer-hostname'),
    pytest.param('producer', True, {}, {'name': 'GET /users/_user_id_',
                                        'namespace': 'remote'}, id='producer-falls-back'),
])
def test_segments_and_subsegments(kind, parent, tags, expected):
    doc = document(finished(kind=kind, parent=parent, tags=tags))
    assert {key: doc.get(key) for key in expected} == expected
    if doc.get('type') == 'subsegment':
        assert doc['trace_id'] == ROOT and 'aws' not in doc
    else:
        assert doc['aws']['xray']['sdk']


@pytest.mark.parametrize('tags, flags', [
    pytest.param({'http.status_code': 200}, {}, id='200'),
    pytest.param({'http.status_code': 301}, {}, id='301'),
    pytest.param({'http.status_code': 404}, {'error': True}, id='404-error'),
    pytest.param({'http.status_code': '404'}, {'error': True}, id='status-as-text'),
    pytest.param({'http.status_code': 429}, {'error': True, 'throttle': True}, id='429-throttle'),
    pytest.param({'http.status_code': 500, 'error': True}, {'fault': True}, id='500-fault'),
    pytest.param({'http.status_code': 503}, {'fault': True}, id='503-fault-without-tag'),
    pytest.param({'error': True}, {'fault': True}, id='exception-without-status'),
    pytest.param({'http.status_code': 200, 'error': True}, {'fault': True},
                 id='aborted-after-200'),
    pytest.param({'http.status_code': 418, 'error': True}, {'error': True},
                 id='4xx-stays-client-error'),
])
def test_error_fault_throttle(tags, flags):
    doc = document(finished(tags=tags))
    assert {key: doc[key] for key in ('error', 'fault', 'throttle') if key in doc} == flags


def _stack_text():
    try:
        {}['missing']
    except KeyError as exc:
        return exc, ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    raise AssertionError('unreachable')


def test_error_logs_become_causes_with_stack_frames():
    exc, stack = _stack_text()
    span = finished(tags={'http.status_code': 500, 'error': True}, logs=[
        {'event': 'error', 'error.kind': 'KeyError', 'message': "'missing'", 'stack': stack},
        {'event': 'error', 'error.object': exc},
    ])
    doc = document(span, SegmentEncoder('shop', working_directory=__file__.rsplit('/', 2)[0]))
    first, second = doc['cause']['exceptions']
    assert doc['cause']['working_directory'] == __file__.rsplit('/', 2)[0]
    assert first['type'] == 'KeyError' and first['message'] == "'missing'"
    assert first['id'] != second['id']
    assert first['stack'][0] == {'path': 'backends/test_xray_reporting.py',
                                 'line': first['stack'][0]['line'], 'label': '_stack_text'}
    assert second['type'] == 'KeyError' and second['stack'][0]['label'] == '_stack_text'
    assert 'remote' not in first and 'metadata' not in doc


def test_client_errors_are_remote():
    doc = document(finished(kind='client', tags={'http.status_code': 502, 'error': True},
                            logs=[{'event': 'error', 'error.kind': 'HTTPError',
                                   'message': 'bad gateway'}]))
    assert doc['fault'] is True
    assert doc['cause']['exceptions'][0]['remote'] is True


def test_long_stacks_are_cut_and_counted():
    stack = 'Traceback (most recent call last):\n' + ''.join(
        f'  File "/srv/app/m.py", line {number}, in f{number}\n    x()\n'
        for number in range(80)) + 'RecursionError: deep\n'
    doc = document(finished(logs=[{'event': 'error', 'error.kind': 'RecursionError',
                                   'stack': stack}]))
    (entry,) = doc['cause']['exceptions']
    assert len(entry['stack']) == 50 and entry['truncated'] == 30
    assert entry['stack'][0] == {'path': 'm.py', 'line': 79, 'label': 'f79'}  # innermost first


@pytest.mark.parametrize('tags', [
    pytest.param({'weird': object()}, id='object'),
    pytest.param({'nan': float('nan'), 'inf': float('-inf')}, id='non-finite'),
    pytest.param({'http.status_code': 'teapot'}, id='bad-status'),
    pytest.param({'text': 'caf\u00e9 \ud800 \x00'}, id='non-ascii-surrogate-nul'),
])
def test_odd_values_still_give_valid_ascii_json(tags):
    text = ENCODER.encode(finished(tags=tags))
    assert text is not None and text.isascii() and '\x00' not in text
    check_document(json.loads(text[len(DAEMON_HEADER):]))


@pytest.mark.parametrize('trace_id, span_id, parent_id', [
    pytest.param('XYZ', 'a' * 16, None, id='bad-trace'),
    pytest.param('a' * 32, 'A' * 16, None, id='upper-span'),
    pytest.param('a' * 32, 'a' * 16, 'short', id='bad-parent'),
    pytest.param(None, 'a' * 16, None, id='no-trace'),
])
def test_spans_breaking_the_contract_are_not_encoded(trace_id, span_id, parent_id):
    span = finished()
    span.context.trace_id, span.context.span_id = trace_id, span_id
    span.context.parent_id = parent_id
    assert ENCODER.encode(span) is None


def test_oversized_documents_are_cut_to_fit_and_marked():
    exc, stack = _stack_text()
    huge = 'x' * 30000
    span = finished(tags={'a': huge, 'b': huge, 'c': huge, 'http.url': 'http://h/' + huge,
                          'http.status_code': 500},
                    logs=[{'event': 'error', 'error.kind': 'KeyError', 'stack': stack * 40,
                           'message': huge}] * 3,
                    span_limits=SpanLimits(value_length=200000))  # larger than a datagram
    text = SegmentEncoder('shop', max_value_length=40000).encode(span)
    assert text is not None and len(text.encode()) <= MAX_DATAGRAM_BYTES
    doc = parse_datagram(text.encode())
    assert doc['annotations']['truncated'] is True and doc['fault'] is True
    assert 'metadata' not in doc and doc['http']['response'] == {'status': 500}
    small = SegmentEncoder('shop').encode(finished())
    assert 'truncated' not in small


@pytest.mark.parametrize('kwargs', [
    pytest.param({'service_name': ''}, id='empty-name'),
    pytest.param({'service_name': 'x', 'max_datagram_bytes': 70000}, id='datagram-too-big'),
    pytest.param({'service_name': 'x', 'max_value_length': 10}, id='value-length'),
])
def test_encoder_arguments_are_checked(kwargs):
    name = kwargs.pop('service_name')
    with pytest.raises(ValueError, match='SegmentEncoder'):
        SegmentEncoder(name, **kwargs)


# --- the UDP sender -------------------------------------------------------------------

@pytest.mark.parametrize('address', [
    pytest.param('localhost', id='no-port'),
    pytest.param('localhost:0', id='port-zero'),
    pytest.param(':2000', id='no-host'),
    pytest.param('[::1]2000', id='ipv6-no-colon'),
])
def test_sender_rejects_bad_addresses(address):
    with pytest.raises(ValueError, match='host:port'):
        UdpSender(address)


def test_sender_sends_one_datagram_per_document():
    with DaemonListener() as daemon:
        sender = UdpSender(daemon.address)
        texts = [DAEMON_HEADER + json.dumps({'n': number}) for number in range(3)]
        sender.send(sender.frame(texts), 3)
        assert [datagram.decode() for datagram in daemon.receive(3)] == texts
        assert daemon.pending() == []
        sender.close()
        sender.send(sender.frame(texts[:1]), 1)  # a closed sender opens a new socket
        assert daemon.receive(1) == [texts[0].encode()]


def test_a_forked_child_sends_through_its_own_socket():
    with DaemonListener() as daemon:
        sender = UdpSender(daemon.address)
        sender.send(sender.frame([DAEMON_HEADER + '{"from":"parent"}']), 1)
        parent_socket = sender._socket  # noqa: SLF001
        pid = os.fork()
        if pid == 0:  # the child: report through the inherited sender, then leave at once
            code = 0
            try:
                sender.send(sender.frame([DAEMON_HEADER + '{"from":"child"}']), 1)
                code = 0 if sender._socket is not parent_socket else 3  # noqa: SLF001
            except BaseException:
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [json.loads(d.partition(b'\n')[2]) for d in daemon.receive(2)] == [
            {'from': 'parent'}, {'from': 'child'}]
        sender.send(sender.frame([DAEMON_HEADER + '{"from":"parent"}']), 1)
        assert sender._socket is parent_socket  # noqa: SLF001  # the parent's is untouched
        assert daemon.receive(1)


def test_an_unresolvable_daemon_is_a_retryable_send_error():
    sender = UdpSender('no-such-host.invalid:2000')
    with pytest.raises(SendError) as raised:
        sender.send(sender.frame([DAEMON_HEADER + '{}']), 1)
    assert raised.value.retryable is True and 'no-such-host.invalid' in str(raised.value)


def test_a_datagram_too_large_for_udp_is_not_retried():
    with DaemonListener() as daemon:
        sender = UdpSender(daemon.address)
        with pytest.raises(SendError) as raised:
            sender.send(b'x' * 70000, 1)
        assert raised.value.retryable is False


# --- wrap() end to end ----------------------------------------------------------------

class User:
    def on_get(self, req, resp, user_id):
        scope = start_client_span('GET', f'http://api.example.com/profiles/{user_id}',
                                  'test')
        resp.media = {'headers': inject_headers({})}
        finish_client_span(scope, 200)


class Boom:
    def on_get(self, req, resp):
        raise KeyError('missing thing')


class Limited:
    def on_get(self, req, resp):
        raise falcon.HTTPTooManyRequests()


class Leaky:
    def on_get(self, req, resp):
        with opentracing.global_tracer().start_active_span('charge') as scope:
            scope.span.log_kv({'event': 'retry', 'url': 'http://billing/x?token=S3CR3T'})
            raise ConnectionError('Max retries exceeded with url: /x?password=S3CR3T')


@pytest.fixture
def daemon():
    with DaemonListener() as listener:
        yield listener


@pytest.fixture
def client(daemon, monkeypatch):
    """A Falcon app wrapped by wrap(), configured for X-Ray only through the environment."""
    monkeypatch.setenv('FALCON_TRACING_SERVICE_NAME', 'shop')
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'xray')
    monkeypatch.setenv('AWS_XRAY_DAEMON_ADDRESS', daemon.address)
    monkeypatch.setenv('FALCON_TRACING_PROPAGATION', 'xray')
    app = falcon.App()
    app.add_route('/users/{user_id}', User())
    app.add_route('/boom', Boom())
    app.add_route('/limited', Limited())
    app.add_route('/leaky', Leaky())
    yield falcon.testing.TestClient(wrap(app))
    opentracing.global_tracer().close(5)


def flushed(daemon, count):
    assert opentracing.global_tracer().flush(5)
    documents = daemon.documents(count)
    assert daemon.pending() == []
    return documents


def test_wrap_sends_segments_to_the_daemon(client, daemon):
    before = int(time.time())
    statuses = [client.simulate_get(path).status_code
                for path in ('/users/42', '/boom', '/limited', '/nowhere')]
    assert statuses == [200, 500, 429, 404]
    documents = flushed(daemon, 5)
    segments = {doc['annotations']['operation']: doc for doc in documents
                if doc.get('type') != 'subsegment'}
    assert set(segments) == {'GET /users/{user_id}', 'GET /boom', 'GET /limited', 'GET'}
    for doc in segments.values():
        assert doc['name'] == 'shop' and 'parent_id' not in doc
        assert before <= int(doc['trace_id'][2:10], 16) <= int(time.time())  # X-Ray ids
    assert segments['GET /users/{user_id}']['http']['response']['status'] == 200
    boom = segments['GET /boom']
    assert boom['fault'] is True and boom['http']['response']['status'] == 500
    (cause,) = boom['cause']['exceptions']
    assert cause['type'] == 'KeyError' and 'missing thing' in cause['message']
    assert any(frame['label'] == 'on_get' for frame in cause['stack'])
    limited = segments['GET /limited']
    assert limited['error'] is True and limited['throttle'] is True and 'fault' not in limited
    assert segments['GET']['error'] is True and segments['GET']['http']['response'] == {
        'status': 404, 'content_length': segments['GET']['http']['response']['content_length']}
    (sub,) = [doc for doc in documents if doc.get('type') == 'subsegment']
    user = segments['GET /users/{user_id}']
    assert sub['name'] == 'api.example.com' and sub['namespace'] == 'remote'
    assert sub['parent_id'] == user['id'] and sub['trace_id'] == user['trace_id']
    assert sub['http'] == {'request': {'method': 'GET',
                                       'url': 'http://api.example.com/profiles/42'},
                           'response': {'status': 200}}


def test_wrap_continues_the_callers_xray_trace(client, daemon):
    incoming = f'Root={ROOT};Parent={CALLER};Sampled=1;Lineage=a87bd80c:1'
    response = client.simulate_get('/users/7', headers={'X-Amzn-Trace-Id': incoming})
    segment, sub = sorted(flushed(daemon, 2), key=lambda doc: doc.get('type', ''))
    assert segment['trace_id'] == ROOT and segment['parent_id'] == CALLER
    # The outgoing header names the client subsegment as the next service's parent.
    assert response.json['headers'] == {
        'X-Amzn-Trace-Id': f'Root={ROOT};Parent={sub["id"]};Sampled=1;Lineage=a87bd80c:1'}


def test_unsampled_requests_are_never_sent(client, daemon):
    client.simulate_get('/boom', headers={
        'X-Amzn-Trace-Id': f'Root={ROOT};Parent={CALLER};Sampled=0'})
    client.simulate_get('/users/1', headers={
        'X-Amzn-Trace-Id': 'Root=1-5759e988-000000000000000000000001;Parent=1111111111111111;'
                           'Sampled=1'})
    documents = flushed(daemon, 2)
    assert {doc['trace_id'] for doc in documents} == {'1-5759e988-000000000000000000000001'}


def test_exception_messages_and_logs_have_no_url_secret(client, daemon):
    """Causes and log metadata quote URLs: redacted like http.url, on every segment."""
    assert client.simulate_get('/leaky').status_code == 500
    documents = flushed(daemon, 2)
    text = json.dumps(documents)
    assert 'S3CR3T' not in text
    causes = [cause for doc in documents for cause in doc['cause']['exceptions']]
    assert causes and all('password=REDACTED' in cause['message'] for cause in causes)
