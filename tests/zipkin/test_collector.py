"""The test collector: a real, small Zipkin v2 API on a free port."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Optional

import pytest

from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
from falcon_tracing_wsgi.export.http import HttpSender, frame_json_array

from tests.spans import make_span

MARGIN = 0.4


def _span(index: int, service: str = 'frontend', name: str = 'get /',
          trace_id: str = '5af7183fb1d4cf5f', timestamp: int = 1_700_000_000_000_000
          ) -> dict[str, Any]:
    return {'traceId': trace_id, 'id': f'{index + 1:016x}', 'name': name,
            'timestamp': timestamp + index, 'duration': 10,
            'localEndpoint': {'serviceName': service}}


def _request(collector: ZipkinCollector, method: str, path: str, body: Optional[bytes] = None,
             headers: Optional[dict[str, str]] = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection('127.0.0.1', collector.port, timeout=5.0)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _post(collector: ZipkinCollector, spans: Any, **headers: str) -> tuple[int, bytes]:
    body = spans if isinstance(spans, bytes) else json.dumps(spans).encode()
    headers.setdefault('Content-Type', 'application/json')
    return _request(collector, 'POST', '/api/v2/spans', body,
                    {k.replace('_', '-'): v for k, v in headers.items()})


def _get(collector: ZipkinCollector, path: str) -> tuple[int, Any]:
    status, body = _request(collector, 'GET', path)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def test_url_points_at_a_free_local_port(collector: ZipkinCollector) -> None:
    assert collector.port > 0
    assert collector.url == f'http://127.0.0.1:{collector.port}/api/v2/spans'


def test_valid_spans_are_accepted_and_stored(collector: ZipkinCollector) -> None:
    assert _post(collector, [_span(0), _span(1)]) == (202, b'')
    assert [span['id'] for span in collector.spans()] == ['0000000000000001',
                                                          '0000000000000002']
    assert collector.request_count == 1 and collector.rejected_count == 0


@pytest.mark.parametrize('body,headers,status,fragment', [
    pytest.param([{'traceId': 'nope', 'id': '0000000000000001'}], {}, 400, 'traceId',
                 id='invalid-span'),
    pytest.param([_span(0), {**_span(1), 'kind': None}], {}, 400, 'spans[1]: kind',
                 id='one-bad-span-rejects-all'),
    pytest.param(b'{"not": "a list"}', {}, 400, 'JSON array', id='not-a-list'),
    pytest.param(b'[{"traceId":', {}, 400, 'not JSON', id='truncated'),
    pytest.param(b'[NaN]', {}, 400, 'not JSON', id='nan'),
    pytest.param(b'\xff\xfe', {}, 400, 'not JSON', id='not-utf8'),
    pytest.param([_span(0)], {'Content-Type': 'application/x-protobuf'}, 415, 'Content-Type',
                 id='protobuf'),
    pytest.param([_span(0)], {'Content-Encoding': 'br'}, 415, 'Content-Encoding',
                 id='brotli'),
    pytest.param(b'[]', {'Content-Encoding': 'gzip'}, 400, 'gzip', id='fake-gzip'),
])
def test_bad_payloads_are_rejected_and_nothing_is_stored(
        collector: ZipkinCollector, body: Any, headers: dict[str, str], status: int,
        fragment: str) -> None:
    got, answer = _post(collector, body, **headers)
    assert got == status
    assert fragment in answer.decode()
    assert collector.spans() == []
    assert collector.rejected_count == 1


def test_gzip_bodies_are_accepted(collector: ZipkinCollector) -> None:
    body = gzip.compress(json.dumps([_span(0)]).encode())
    assert _post(collector, body, Content_Encoding='gzip')[0] == 202
    assert len(collector.spans()) == 1


def test_an_empty_list_is_accepted(collector: ZipkinCollector) -> None:
    assert _post(collector, [])[0] == 202


def test_a_missing_content_length_is_refused(collector: ZipkinCollector) -> None:
    conn = http.client.HTTPConnection('127.0.0.1', collector.port, timeout=5.0)
    try:
        conn.putrequest('POST', '/api/v2/spans')
        conn.endheaders()
        assert conn.getresponse().status == 411
    finally:
        conn.close()


def test_queries_answer_like_zipkin(collector: ZipkinCollector) -> None:
    _post(collector, [_span(0, 'frontend', 'get /', 'aaaaaaaaaaaaaaaa', 1_700_000_000_000_000),
                      _span(1, 'backend', 'select', 'aaaaaaaaaaaaaaaa', 1_700_000_000_000_010),
                      _span(2, 'Backend', 'insert', 'bbbbbbbbbbbbbbbb', 1_700_000_100_000_000)])
    assert _get(collector, '/api/v2/services') == (200, ['backend', 'frontend'])
    assert _get(collector, '/api/v2/spans?serviceName=backend') == (200, ['insert', 'select'])
    assert _get(collector, '/api/v2/spans')[0] == 400
    status, traces = _get(collector, '/api/v2/traces')
    assert status == 200
    assert [[s['id'] for s in trace] for trace in traces] == [
        ['0000000000000003'], ['0000000000000001', '0000000000000002']]  # newest first
    _, traces = _get(collector, '/api/v2/traces?serviceName=frontend')
    assert [trace[0]['traceId'] for trace in traces] == ['aaaaaaaaaaaaaaaa']
    _, traces = _get(collector, '/api/v2/traces?spanName=INSERT')
    assert [trace[0]['traceId'] for trace in traces] == ['bbbbbbbbbbbbbbbb']
    _, traces = _get(collector, '/api/v2/traces?limit=1')
    assert len(traces) == 1
    status, trace = _get(collector, '/api/v2/trace/aaaaaaaaaaaaaaaa')
    assert status == 200 and [s['id'] for s in trace] == ['0000000000000001',
                                                          '0000000000000002']
    assert _get(collector, '/api/v2/trace/cccccccccccccccc')[0] == 404
    assert _get(collector, '/api/v2/trace/xyz')[0] == 400
    assert _get(collector, '/api/v2/nothing')[0] == 404


def test_wait_for_spans_wakes_on_arrival_and_times_out(collector: ZipkinCollector) -> None:
    assert not collector.wait_for_spans(1, timeout=0.05)
    thread = threading.Thread(target=_post, args=(collector, [_span(0), _span(1)]))
    thread.start()
    assert collector.wait_for_spans(2, timeout=5.0)
    thread.join(5.0)


def test_clear_forgets_everything(collector: ZipkinCollector) -> None:
    _post(collector, [_span(0)])
    _post(collector, b'[1]')
    collector.clear()
    assert collector.spans() == [] and collector.request_headers() == []
    assert collector.request_count == 0 and collector.rejected_count == 0


def test_an_injected_status_is_answered_and_nothing_stored(collector: ZipkinCollector) -> None:
    collector.set_fault(status=503)
    assert _post(collector, [_span(0)]) == (503, b'injected fault')
    collector.set_fault()
    assert _post(collector, [_span(1)])[0] == 202
    assert [span['id'] for span in collector.spans()] == ['0000000000000002']
    assert _get(collector, '/api/v2/services') == (200, ['frontend'])  # queries unaffected


def test_an_injected_delay_slows_the_answer(collector: ZipkinCollector) -> None:
    collector.set_fault(delay=0.3)
    start = time.monotonic()
    assert _post(collector, [_span(0)])[0] == 202
    assert 0.3 <= time.monotonic() - start < 0.3 + MARGIN


def test_a_hang_ends_when_cleared_with_a_closed_connection(collector: ZipkinCollector) -> None:
    collector.set_fault(hang=True)
    errors: list[BaseException] = []

    def post() -> None:
        try:
            _post(collector, [_span(0)])
        except BaseException as exc:  # noqa: B902 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    assert collector.wait_for_requests(1, timeout=5.0)
    assert thread.is_alive()  # no answer yet
    collector.set_fault()
    thread.join(5.0)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], http.client.RemoteDisconnected)
    assert collector.spans() == []


def test_stop_is_bounded_with_a_hanging_request_and_idle_connections() -> None:
    collector = ZipkinCollector().start()
    idle = HttpSender(collector.url)
    idle.send(frame_json_array([JsonV2Encoder(Endpoint('s')).encode(make_span(0))]), 1)
    collector.set_fault(hang=True)
    hanging = HttpSender(collector.url, read_timeout=30.0)
    thread = threading.Thread(target=lambda: _swallow(hanging.send, b'[]', 0))
    thread.start()
    assert collector.wait_for_requests(2, timeout=5.0)
    start = time.monotonic()
    collector.stop()
    assert time.monotonic() - start < 2.0
    thread.join(5.0)
    assert not thread.is_alive()
    idle.close()
    hanging.close()


def _swallow(function: Any, *args: Any) -> None:
    try:
        function(*args)
    except Exception:
        pass


def test_the_context_manager_always_stops() -> None:
    with pytest.raises(RuntimeError):
        with ZipkinCollector() as collector:
            port = collector.port
            raise RuntimeError('test body failed')
    with pytest.raises(ConnectionError):
        http.client.HTTPConnection('127.0.0.1', port, timeout=1.0).connect()


def test_jsonl_appends_accepted_spans(tmp_path: Any) -> None:
    path = tmp_path / 'spans.jsonl'
    with ZipkinCollector(jsonl=str(path)) as collector:
        _post(collector, [_span(0), _span(1)])
        _post(collector, [{'bad': True}])
        _post(collector, [_span(2)])
    assert [json.loads(line)['id'] for line in path.read_text().splitlines()] == [
        '0000000000000001', '0000000000000002', '0000000000000003']


def _read_lines(stream: Any, lines: 'queue.Queue[str]') -> None:
    for line in stream:
        lines.put(line.rstrip('\n'))


def test_command_line_mode_prints_the_url_and_counts(tmp_path: Any) -> None:
    path = tmp_path / 'cli.jsonl'
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    process = subprocess.Popen(
        [sys.executable, '-m', 'falcon_tracing_wsgi.zipkin.collector', '--port', '0',
         '--jsonl', str(path)], stdout=subprocess.PIPE, text=True, cwd=root)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        first = lines.get(timeout=10.0)
        assert first.startswith('zipkin collector listening on http://127.0.0.1:')
        url = first.rsplit(' ', 1)[1]
        sender = HttpSender(url)
        encoder = JsonV2Encoder(Endpoint('cli'))
        sender.send(frame_json_array([encoder.encode(make_span(i)) for i in range(3)]), 3)
        assert lines.get(timeout=10.0) == 'spans: 3 (+3)'
        sender.send(frame_json_array([encoder.encode(make_span(3))]), 1)
        assert lines.get(timeout=10.0) == 'spans: 4 (+1)'
        sender.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10.0) == 0
        assert lines.get(timeout=10.0) == 'stopped; 4 spans received'
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5.0)
    assert len(path.read_text().splitlines()) == 4


def test_command_line_mode_reports_a_busy_port() -> None:
    with ZipkinCollector() as busy:
        done = subprocess.run([sys.executable, '-m', 'falcon_tracing_wsgi.zipkin.collector',
                               '--port', str(busy.port)], capture_output=True, text=True,
                              timeout=30)
    assert done.returncode == 1
    assert 'cannot listen' in done.stderr
