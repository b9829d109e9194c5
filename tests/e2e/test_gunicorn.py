"""End to end: real gunicorn processes on 127.0.0.1, a real Zipkin v2 collector.

Run only these with ``python -m pytest -m e2e``. Every wait is bounded; no test sleeps
to synchronise: servers are polled with connection attempts and spans are awaited on the
collector's condition.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
from time import monotonic

import pytest

from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector

from .conftest import (
    READY_TIMEOUT, SPAN_TIMEOUT, TRACE_HEADER, get, start_server, worker_summaries,
)

pytestmark = pytest.mark.e2e

SYNC = ()
GTHREAD = ('--worker-class', 'gthread', '--threads', '4')
GEVENT = ('--worker-class', 'gevent')
#: What a gevent deployment sets (contextvars follow greenlets too; this is the documented
#: setting).
GEVENT_ENV = {'FALCON_TRACING_SCOPE_MANAGER': 'gevent'}
#: Routes of tests/e2e/apps.py and the span name each one gets.
ROUTES = {'/hello': 'GET /hello', '/fail': 'GET /fail', '/stream': 'GET /stream'}


def by_service_and_kind(spans):
    found = {}
    for span in spans:
        key = (span['localEndpoint']['serviceName'], span.get('kind'))
        assert key not in found, spans
        found[key] = span
    return found


# --------------------------------------------------------------------------- one trace

@pytest.mark.parametrize('worker_options', [
    pytest.param(SYNC, id='sync'),
    pytest.param(GTHREAD, id='gthread'),
])
def test_frontend_client_and_backend_spans_form_one_trace(servers, collector, worker_options):
    backend = servers(service='backend', options=worker_options)
    frontend = servers(service='frontend', env={'E2E_DOWNSTREAM_URL': backend.url},
                       options=worker_options)
    status, headers, body = get(frontend, '/call')
    assert (status, body) == (200, b'hello')
    assert collector.wait_for_spans(3, SPAN_TIMEOUT), collector.spans()
    for server in (frontend, backend):
        assert server.stop() == 0
    spans = by_service_and_kind(collector.spans())
    assert set(spans) == {('frontend', 'SERVER'), ('frontend', 'CLIENT'), ('backend', 'SERVER')}
    server_span = spans['frontend', 'SERVER']
    client_span = spans['frontend', 'CLIENT']
    backend_span = spans['backend', 'SERVER']
    assert {s['traceId'] for s in spans.values()} == {headers[TRACE_HEADER]}
    assert 'parentId' not in server_span
    assert client_span['parentId'] == server_span['id']
    assert backend_span['parentId'] == client_span['id']
    assert (server_span['name'], client_span['name'], backend_span['name']) == \
        ('GET /call', 'HTTP GET', 'GET /hello')
    assert client_span['remoteEndpoint']['port'] == backend.port
    # each service's worker is on its spans
    assert server_span['tags']['gunicorn.worker.pid'] == headers['X-Worker-Pid']
    assert backend_span['tags']['gunicorn.worker.pid'] != headers['X-Worker-Pid']


# --------------------------------------------------------------------------- nothing lost

@pytest.mark.parametrize('workers, options, min_workers', [
    pytest.param(2, (), 1, id='sigterm-sync'),
    pytest.param(2, ('--preload',), 1, id='sigterm-preload'),
    pytest.param(2, GTHREAD, 1, id='sigterm-gthread'),
    # 12 requests, 5 per worker: the last worker is not recycled, so no worker is
    # booting when SIGTERM comes (see GunicornProcess.wait_workers)
    pytest.param(1, ('--max-requests', '5'), 3, id='max-requests-recycling'),
])
def test_every_answered_request_is_reported(servers, collector, workers, options, min_workers):
    """Spans received == requests answered, sent by the worker_exit hook.

    The flush interval is an hour, so no span leaves a worker before that worker exits
    (SIGTERM at the end, or recycling with --max-requests).
    """
    server = servers(workers=workers, options=options, flush_interval='3600')
    answered = []
    for path in list(ROUTES) * 4:
        status, _, _ = get(server, path)
        answered.append((path, status))
    assert server.stop() == 0
    spans = collector.spans()
    assert sorted(s['name'] for s in spans) == sorted(ROUTES[path] for path, _ in answered)
    statuses = sorted(int(s['tags']['http.status_code']) for s in spans)
    assert statuses == sorted(status for _, status in answered)
    pids = {s['tags']['gunicorn.worker.pid'] for s in spans}
    assert len(pids) >= min_workers
    summaries = worker_summaries(server.log())
    assert sum(sent for _, sent, _, _ in summaries) == len(answered)
    assert all(dropped == failed == 0 for _, _, dropped, failed in summaries)


@pytest.mark.parametrize('options', [
    pytest.param((), id='no-preload'),
    pytest.param(('--preload',), id='preload'),
])
def test_hup_reload_loses_nothing(servers, collector, options):
    """HUP: new workers start, the old one finishes and exits; every span arrives."""
    server = servers(options=options, flush_interval='3600')
    answered = 0
    old_workers = set()
    for _ in range(3):
        _, headers, _ = get(server, '/hello')
        answered += 1
        old_workers.add(headers['X-Worker-Pid'])
    server.send_signal(signal.SIGHUP)
    deadline = monotonic() + READY_TIMEOUT
    while True:  # until a new worker answers; every answer is counted
        _, headers, _ = get(server, '/hello')
        answered += 1
        if headers['X-Worker-Pid'] not in old_workers:
            break
        assert monotonic() < deadline, 'no new worker after HUP'
        with pytest.raises(subprocess.TimeoutExpired):  # the pause; the server must live
            server.process.wait(timeout=0.05)
    assert server.stop() == 0
    spans = collector.spans()
    assert len(spans) == answered
    assert len({s['tags']['gunicorn.worker.pid'] for s in spans}) >= 2
    assert sum(sent for _, sent, _, _ in worker_summaries(server.log())) == answered


@pytest.mark.parametrize('options', [
    pytest.param(GEVENT, id='gevent'),
    pytest.param(GEVENT + ('--preload',), id='gevent-preload'),
])
def test_gevent_workers_exit_at_once_and_lose_nothing(servers, collector, options):
    """Issue 11 item 13: with --preload the reporter is built before the worker
    monkey-patches; with spans queued at SIGTERM each worker used to hang for the whole
    shutdown timeout (5 s) and lose spans. The flush interval is an hour, so every span
    is still queued when SIGTERM comes."""
    pytest.importorskip('gevent')
    server = servers(workers=2, options=options, flush_interval='3600', env=GEVENT_ENV)
    answered = []
    for path in list(ROUTES) * 10:
        status, _, _ = get(server, path)
        answered.append((path, status))
    started = monotonic()
    assert server.stop() == 0
    stopped = monotonic() - started
    spans = collector.spans()
    assert sorted(s['name'] for s in spans) == sorted(ROUTES[path] for path, _ in answered)
    summaries = worker_summaries(server.log())
    assert len(summaries) == 2, server.log()
    assert sum(sent for _, sent, _, _ in summaries) == len(answered)
    assert all(dropped == failed == 0 for _, _, dropped, failed in summaries)
    assert stopped < 4.0, server.log()  # well under the 5 s shutdown timeout


# --------------------------------------------------------------------------- worker timeout

def test_a_worker_timeout_still_reports_the_request_as_an_error(servers, collector):
    server = servers(options=('--timeout', '2'), flush_interval='3600')
    try:
        status, _, _ = get(server, '/block', timeout=30)
    except (http.client.HTTPException, ConnectionError):
        status = None  # the worker died before gunicorn could answer
    assert status in (500, None)
    assert collector.wait_for_spans(1, SPAN_TIMEOUT), server.log()
    (span,) = collector.spans()
    assert span['name'] == 'GET /block'
    assert span['tags']['error'] == 'true'
    # What happened, not a status the span cannot know: the hook runs before gunicorn
    # decides (recent versions then write a 500 page themselves; older ones send nothing).
    assert 'http.status_code' not in span['tags']
    assert span['tags']['http.aborted'] == 'true'
    assert span['tags']['http.aborted.reason'] == 'gunicorn worker timeout'
    log = server.log()
    assert 'WORKER TIMEOUT' in log
    assert 'timed out; 1 in-flight spans finished with error=true' in log
    server.wait_workers(1, READY_TIMEOUT)  # the replacement, so that the stop is quick


# --------------------------------------------------------------------------- sendfile

FILE_SIZE = 32 << 20  # more than the loopback socket buffers hold


def _download(server, limit):
    """GET /file on a raw socket; stop (close the connection) after ``limit`` body bytes."""
    with socket.create_connection(('127.0.0.1', server.port), timeout=30) as sock:
        sock.sendall(b'GET /file HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
        received = b''
        while b'\r\n\r\n' not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
        body = len(received.partition(b'\r\n\r\n')[2])
        while body < limit:
            data = sock.recv(min(1 << 20, limit - body))
            if not data:
                break
            body += len(data)
    return body


@pytest.mark.parametrize('limit, aborted', [
    pytest.param(FILE_SIZE, False, id='sent-in-full'),
    pytest.param(1 << 16, True, id='client-went-away'),
])
def test_a_sendfile_response_is_measured_and_a_cut_one_is_aborted(
        servers, collector, tmp_path, limit, aborted):
    path = tmp_path / 'payload.bin'
    path.write_bytes(os.urandom(FILE_SIZE))
    server = servers(env={'E2E_FILE': str(path)})
    assert _download(server, limit) == limit
    assert collector.wait_for_spans(1, SPAN_TIMEOUT), server.log()
    (span,) = collector.spans()
    assert span['name'] == 'GET /file'
    assert span['tags'].get('http.aborted') == ('true' if aborted else None)
    size = int(span['tags'].get('http.response_size', 0))
    assert size == FILE_SIZE if not aborted else size < FILE_SIZE


# --------------------------------------------------------------------------- malformed headers

@pytest.fixture(scope='module')
def shared():
    """One collector and one server for the many small header cases."""
    with ZipkinCollector() as collector:
        server = start_server(collector, service='headers')
        try:
            yield collector, server
        finally:
            server.close()


_ID32 = 'a' * 32
_ID16 = 'b' * 16


@pytest.mark.parametrize('headers', [
    pytest.param([('X-B3-TraceId', 'z' * 32), ('X-B3-SpanId', 'not-hex')], id='b3-not-hex'),
    pytest.param([('X-B3-TraceId', _ID32), ('X-B3-SpanId', _ID16),
                  ('X-B3-Sampled', 'maybe'), ('X-B3-Flags', '9')], id='b3-bad-flags'),
    pytest.param([('X-B3-TraceId', 'é' * 32), ('X-B3-SpanId', 'ü' * 16)], id='b3-latin1'),
    pytest.param([('b3', '1-2-3-4-5-6-7')], id='b3-single-too-many-parts'),
    pytest.param([('traceparent', f'00-{"0" * 32}-{"0" * 16}-01')], id='w3c-zero-ids'),
    pytest.param([('traceparent', f'ff-{_ID32}-{_ID16}-01')], id='w3c-version-ff'),
    pytest.param([('traceparent', f'00-{_ID32}-{_ID16}-01' + 'x' * 6000)], id='w3c-long'),
    pytest.param([('traceparent', f'00-{_ID32}-{_ID16}-01'),
                  ('traceparent', f'00-{"c" * 32}-{"d" * 16}-00')], id='w3c-twice'),
    pytest.param([('tracestate', ','.join(f'k{i}=v' for i in range(500)))],
                 id='w3c-tracestate-flood'),
    pytest.param([('uber-trace-id', '::::')], id='jaeger-empty-parts'),
    pytest.param([('uber-trace-id', 'x:y:z:w')], id='jaeger-not-hex'),
    pytest.param([('baggage', 'k=v,' * 1500)], id='baggage-large'),
    pytest.param([('baggage', '=,=;=%zz')], id='baggage-garbage'),
    pytest.param([('b3', '\x7f\x01')], id='control-characters'),
])
def test_malformed_inbound_headers_never_cause_a_5xx(shared, headers):
    collector, server = shared
    collector.clear()
    status, response_headers, body = get(server, '/hello', headers)
    assert status < 500, body
    if status == 200:  # gunicorn may refuse a header itself (400): then the app never ran
        assert body == b'hello'
        assert collector.wait_for_spans(1, SPAN_TIMEOUT)
        (span,) = collector.spans()
        assert span['traceId'] == response_headers[TRACE_HEADER]
        assert span['name'] == 'GET /hello'


# --------------------------------------------------------------------------- zero-code entrypoint

def test_the_zero_code_entrypoint_traces_an_unmodified_app(servers, collector):
    server = servers('falcon_tracing_wsgi.entrypoint:app', service='untouched',
                     env={'FALCON_TRACING_APP': 'tests.e2e.apps:create_app()'})
    status, headers, _ = get(server, '/hello')
    assert status == 200
    assert collector.wait_for_spans(1, SPAN_TIMEOUT)
    (span,) = collector.spans()
    assert span['traceId'] == headers[TRACE_HEADER]
    assert span['name'] == 'GET /hello'
    assert span['localEndpoint']['serviceName'] == 'untouched'
    assert span['tags']['component'] == 'falcon'
    assert span['tags']['gunicorn.worker.pid'] == headers['X-Worker-Pid']


@pytest.mark.parametrize('env, options, message', [
    pytest.param({}, (), 'FALCON_TRACING_APP is not set', id='unset'),
    pytest.param({'FALCON_TRACING_APP': 'tests.e2e.nope:app'}, (),
                 "no module named 'tests.e2e.nope'", id='no-module'),
    pytest.param({'FALCON_TRACING_APP': 'tests.e2e.apps:nope'}, ('--preload',),
                 "has no attribute 'nope'", id='no-attribute-preload'),
])
def test_the_zero_code_entrypoint_stops_with_a_clear_error(servers, env, options, message):
    server = servers('falcon_tracing_wsgi.entrypoint:app', env=env, options=options,
                     ready=False)
    assert server.process.wait(timeout=READY_TIMEOUT) != 0
    assert message in server.log()
