"""HttpSender against the real test collector, and FileSender's JSON lines."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from falcon_tracing_wsgi._types import SendError
from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector
from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
from falcon_tracing_wsgi.export.file import FileSender, frame_json_lines
from falcon_tracing_wsgi.demo.processes import free_port
from falcon_tracing_wsgi.export.http import HttpSender, frame_json_array

from tests.spans import make_span

ENCODER = JsonV2Encoder(Endpoint('sender-test'))
MARGIN = 0.4  # seconds of slack on timing assertions (scheduling on a loaded machine)


def _encoded(count: int, start: int = 0) -> list[str]:
    texts = [ENCODER.encode(make_span(start + i)) for i in range(count)]
    assert all(texts)
    return texts  # type: ignore[return-value]


def _body(count: int, start: int = 0) -> bytes:
    return frame_json_array(_encoded(count, start))


@pytest.fixture
def sender(collector: ZipkinCollector) -> Iterator[HttpSender]:
    http = HttpSender(collector.url, connect_timeout=1.0, read_timeout=2.0)
    yield http
    http.close()


def test_a_batch_is_accepted_and_stored(collector: ZipkinCollector,
                                        sender: HttpSender) -> None:
    sender.send(_body(3), 3)
    assert [span['id'] for span in collector.spans()] == [f'{i + 1:016x}' for i in range(3)]


@pytest.mark.parametrize('host', [
    pytest.param('127.0.0.1', id='address'),
    pytest.param('localhost', id='host-name'),  # resolved from bytes (no idna codec)
])
def test_the_collector_is_reached_by_address_or_name(collector: ZipkinCollector,
                                                     host: str) -> None:
    sender = HttpSender(f'http://{host}:{collector.port}/api/v2/spans', connect_timeout=1.0)
    try:
        sender.send(_body(1), 1)
    finally:
        sender.close()
    (headers,) = collector.request_headers()
    assert headers['Host'] == f'{host}:{collector.port}'  # the name, not the bytes
    assert len(collector.spans()) == 1


def test_the_upload_says_b3_0_and_json(collector: ZipkinCollector,
                                       sender: HttpSender) -> None:
    sender.send(_body(1), 1)
    (headers,) = collector.request_headers()
    lower = {name.lower(): value for name, value in headers.items()}
    assert lower['b3'] == '0'  # B3-E6
    assert not any(name.startswith('x-b3-') for name in lower)
    assert lower['content-type'] == 'application/json'
    assert lower['user-agent'].startswith('falcon-tracing-wsgi/')
    assert 'content-encoding' not in lower


def test_extra_headers_are_sent(collector: ZipkinCollector) -> None:
    sender = HttpSender(collector.url, headers={'Authorization': 'Bearer t0ken',
                                                'X-Tenant': 'a'})
    try:
        sender.send(_body(1), 1)
    finally:
        sender.close()
    (headers,) = collector.request_headers()
    assert headers['Authorization'] == 'Bearer t0ken'
    assert headers['X-Tenant'] == 'a'


def test_gzip_bodies_are_compressed_and_accepted(collector: ZipkinCollector) -> None:
    sender = HttpSender(collector.url, gzip=True)
    try:
        sender.send(_body(50), 50)
    finally:
        sender.close()
    (headers,) = collector.request_headers()
    assert headers['Content-Encoding'] == 'gzip'
    assert int(headers['Content-Length']) < len(_body(50)) / 3
    assert len(collector.spans()) == 50


def test_the_connection_is_kept_alive_across_batches(collector: ZipkinCollector,
                                                     sender: HttpSender) -> None:
    for index in range(5):
        sender.send(_body(2, start=index * 2), 2)
    assert collector.request_count == 5
    assert collector.connection_count == 1
    assert len(collector.spans()) == 10


def test_a_connection_the_collector_closed_is_replaced_not_failed() -> None:
    first = ZipkinCollector().start()
    port = first.port
    sender = HttpSender(first.url)
    try:
        sender.send(_body(1), 1)
        first.stop()  # closes the idle keep-alive connection from the server side
        with ZipkinCollector(port=port) as second:
            sender.send(_body(1, start=1), 1)
            assert [span['id'] for span in second.spans()] == ['0000000000000002']
    finally:
        sender.close()
        first.stop()


@pytest.mark.parametrize('status,retryable', [
    pytest.param(500, True, id='500'),
    pytest.param(502, True, id='502'),
    pytest.param(503, True, id='503'),
    pytest.param(429, True, id='429-too-many-requests'),
    pytest.param(408, True, id='408-request-timeout'),
    pytest.param(400, False, id='400'),
    pytest.param(401, False, id='401'),
    pytest.param(403, False, id='403'),
    pytest.param(413, False, id='413'),
    pytest.param(301, False, id='301-wrong-url'),
])
def test_status_codes_decide_whether_a_retry_may_help(collector: ZipkinCollector,
                                                      sender: HttpSender, status: int,
                                                      retryable: bool) -> None:
    collector.set_fault(status=status)
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1)
    assert info.value.retryable is retryable
    assert f'HTTP {status}' in str(info.value)
    collector.set_fault()
    sender.send(_body(1), 1)  # the same connection still works afterwards
    assert collector.connection_count == 1


def test_a_payload_the_collector_rejects_is_not_retryable(collector: ZipkinCollector,
                                                          sender: HttpSender) -> None:
    with pytest.raises(SendError) as info:
        sender.send(b'[{"traceId":"xyz","id":"0000000000000001"}]', 1)
    assert info.value.retryable is False
    assert 'HTTP 400' in str(info.value) and 'traceId' in str(info.value)
    assert collector.rejected_count == 1
    assert collector.spans() == []


def test_a_wrong_path_is_not_retryable(collector: ZipkinCollector) -> None:
    sender = HttpSender(collector.base_url + '/api/v1/spans')
    try:
        with pytest.raises(SendError) as info:
            sender.send(_body(1), 1)
    finally:
        sender.close()
    assert info.value.retryable is False
    assert 'HTTP 404' in str(info.value)


def test_an_empty_url_path_means_the_v2_spans_endpoint(collector: ZipkinCollector) -> None:
    sender = HttpSender(collector.base_url)
    try:
        sender.send(_body(1), 1)
    finally:
        sender.close()
    assert len(collector.spans()) == 1


def test_connection_refused_is_retryable() -> None:
    sender = HttpSender(f'http://127.0.0.1:{free_port()}/api/v2/spans')
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1)
    assert info.value.retryable is True
    assert 'ConnectionRefusedError' in str(info.value)


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen backlog is full, so a new connect is never answered."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(('127.0.0.1', port), timeout=1.0)
    try:
        yield port
    finally:
        filler.close()
        listener.close()


@pytest.mark.parametrize('connect_timeout,timeout,bound', [
    pytest.param(0.3, None, 0.3, id='connect-timeout'),
    pytest.param(30.0, 0.3, 0.3, id='caller-timeout-caps-connect'),
])
def test_connecting_is_bounded(unanswered_port: int, connect_timeout: float,
                               timeout: Any, bound: float) -> None:
    sender = HttpSender(f'http://127.0.0.1:{unanswered_port}/api/v2/spans',
                        connect_timeout=connect_timeout, read_timeout=30.0)
    start = time.monotonic()
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1, timeout=timeout)
    elapsed = time.monotonic() - start
    assert info.value.retryable is True
    assert 'timed out' in str(info.value)
    assert bound - 0.05 <= elapsed < bound + MARGIN


@pytest.mark.parametrize('read_timeout,timeout,bound', [
    pytest.param(0.3, None, 0.3, id='read-timeout'),
    pytest.param(30.0, 0.3, 0.3, id='caller-timeout-caps-read'),
])
def test_a_hanging_collector_is_bounded(collector: ZipkinCollector, read_timeout: float,
                                        timeout: Any, bound: float) -> None:
    collector.set_fault(hang=True)
    sender = HttpSender(collector.url, read_timeout=read_timeout)
    start = time.monotonic()
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1, timeout=timeout)
    elapsed = time.monotonic() - start
    sender.close()
    assert info.value.retryable is True
    assert 'timed out' in str(info.value)
    assert bound - 0.05 <= elapsed < bound + MARGIN
    assert collector.spans() == []


class _TrickleServer:
    """Reads one request, then answers one byte every 50 ms, forever (until stopped)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            for byte in b'HTTP/1.1 202 Accepted\r\nX-Pad: ' + b'a' * 10_000:
                if self.stop.wait(0.05):  # pacing the answer, not synchronising the test
                    return
                conn.sendall(bytes([byte]))

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(2.0)


def test_the_read_timeout_bounds_the_whole_answer_not_each_read() -> None:
    server = _TrickleServer()
    sender = HttpSender(f'http://127.0.0.1:{server.port}/api/v2/spans', read_timeout=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(SendError) as info:
            sender.send(_body(1), 1)
        elapsed = time.monotonic() - start
    finally:
        sender.close()
        server.close()
    assert info.value.retryable is True
    assert 0.45 <= elapsed < 0.5 + MARGIN


def test_close_from_another_thread_aborts_a_hanging_send(collector: ZipkinCollector) -> None:
    collector.set_fault(hang=True)
    sender = HttpSender(collector.url, read_timeout=30.0)
    errors: list[SendError] = []

    def send() -> None:
        try:
            sender.send(_body(1), 1)
        except SendError as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert collector.wait_for_requests(1, timeout=5.0)
    start = time.monotonic()
    sender.close()
    thread.join(5.0)
    assert not thread.is_alive()
    assert time.monotonic() - start < 1.0
    assert len(errors) == 1 and errors[0].retryable is True


def test_a_closed_sender_refuses_to_send(collector: ZipkinCollector) -> None:
    sender = HttpSender(collector.url)
    sender.close()
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1)
    assert info.value.retryable is False
    assert collector.request_count == 0


@pytest.mark.parametrize('url', [
    pytest.param('localhost:9411/api/v2/spans', id='no-scheme'),
    pytest.param('ftp://localhost/api/v2/spans', id='ftp'),
    pytest.param('http:///api/v2/spans', id='no-host'),
    pytest.param('http://user:pw@localhost:9411/api/v2/spans', id='credentials'),
    pytest.param('http://localhost:99999/api/v2/spans', id='bad-port'),
    pytest.param(None, id='none'),
])
def test_bad_urls_are_refused_at_construction(url: Any) -> None:
    with pytest.raises(ValueError, match='HttpSender url'):
        HttpSender(url)


@pytest.mark.parametrize('kwargs,message', [
    pytest.param({'connect_timeout': 0}, 'connect_timeout', id='connect-zero'),
    pytest.param({'read_timeout': -1}, 'read_timeout', id='read-negative'),
    pytest.param({'read_timeout': float('inf')}, 'read_timeout', id='read-infinite'),
    pytest.param({'connect_timeout': '2'}, 'connect_timeout', id='connect-string'),
    pytest.param({'headers': {'b3': '1'}}, 'set by the sender', id='b3-header'),
    pytest.param({'headers': {'X-B3-Sampled': '0'}}, 'set by the sender', id='x-b3-header'),
    pytest.param({'headers': {'Content-Type': 'text/plain'}}, 'set by the sender',
                 id='content-type'),
    pytest.param({'headers': {'X-Evil': 'a\r\nInjected: 1'}}, 'not a valid header',
                 id='header-injection'),
    pytest.param({'headers': {'Bad:Name': 'v'}}, 'not a valid header', id='colon-in-name'),
])
def test_bad_options_are_refused_with_a_named_message(kwargs: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpSender('http://127.0.0.1:9411/api/v2/spans', **kwargs)


def test_messages_do_not_show_the_query_string() -> None:
    sender = HttpSender(f'http://127.0.0.1:{free_port()}/api/v2/spans?token=secret')
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1)
    assert 'secret' not in str(info.value)
    assert 'secret' not in repr(sender)


# -- framing and FileSender ---------------------------------------------------------------

@pytest.mark.parametrize('framer,expected', [
    pytest.param(frame_json_array, b'[{"a":1},{"b":2}]', id='array'),
    pytest.param(frame_json_lines, b'{"a":1}\n{"b":2}\n', id='lines'),
])
def test_framing(framer: Any, expected: bytes) -> None:
    assert framer(['{"a":1}', '{"b":2}']) == expected


def test_empty_batches_frame_to_valid_output() -> None:
    assert json.loads(frame_json_array([])) == []
    assert frame_json_lines([]) == b''


def _written_spans(text: str) -> list[dict[str, Any]]:
    assert text.endswith('\n')
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize('stream_factory', [
    pytest.param(io.StringIO, id='text-stream'),
    pytest.param(io.BytesIO, id='binary-stream'),
])
def test_file_sender_writes_one_span_per_line(stream_factory: Any) -> None:
    stream = stream_factory()
    sender = FileSender(stream)
    sender.send(sender.frame(_encoded(2)), 2)
    sender.send(sender.frame(_encoded(1, start=2)), 1)
    sender.close()
    value = stream.getvalue()
    text = value.decode() if isinstance(value, bytes) else value
    assert [span['id'] for span in _written_spans(text)] == [
        '0000000000000001', '0000000000000002', '0000000000000003']
    assert not stream.closed  # a caller's stream is flushed, never closed


def test_file_sender_appends_to_a_path(tmp_path: Any) -> None:
    path = tmp_path / 'spans.jsonl'
    path.write_text('{"earlier":true}\n')
    sender = FileSender(path)
    sender.send(sender.frame(_encoded(2)), 2)
    sender.close()
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier":true}'
    assert [json.loads(line)['id'] for line in lines[1:]] == ['0000000000000001',
                                                              '0000000000000002']


def test_file_sender_does_no_io_until_the_first_batch(tmp_path: Any) -> None:
    path = tmp_path / 'later.jsonl'
    sender = FileSender(str(path))
    assert not path.exists()
    sender.close()
    assert not path.exists()


def test_file_sender_defaults_to_the_current_stderr(capsys: Any) -> None:
    sender = FileSender()
    sender.send(sender.frame(_encoded(1)), 1)
    assert _written_spans(capsys.readouterr().err)[0]['id'] == '0000000000000001'


def test_a_failed_write_is_not_retryable() -> None:
    stream = io.StringIO()
    stream.close()
    with pytest.raises(SendError) as info:
        FileSender(stream).send(b'{}\n', 1)
    assert info.value.retryable is False


def test_file_sender_refuses_a_non_stream() -> None:
    with pytest.raises(ValueError, match='FileSender'):
        FileSender(42)  # type: ignore[arg-type]


# -- https ----------------------------------------------------------------------------------

@pytest.fixture
def tls_collector(tls_certificate: tuple[str, str]) -> Iterator[ZipkinCollector]:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_certificate)
    with ZipkinCollector(ssl_context=context) as running:
        yield running


def test_https_with_a_trusted_certificate_keeps_the_connection(
        tls_collector: ZipkinCollector, tls_certificate: tuple[str, str]) -> None:
    import ssl
    assert tls_collector.url.startswith('https://127.0.0.1:')
    sender = HttpSender(tls_collector.url, ssl_context=ssl.create_default_context(
        cafile=tls_certificate[0]))
    try:
        for index in range(3):
            sender.send(_body(1, start=index), 1)
    finally:
        sender.close()
    assert len(tls_collector.spans()) == 3
    # TLS 1.3 session tickets make an idle socket readable; that is not a closed peer.
    assert tls_collector.connection_count == 1


def test_https_with_an_untrusted_certificate_is_not_retryable(
        tls_collector: ZipkinCollector) -> None:
    sender = HttpSender(tls_collector.url)  # the default context: system CAs only
    with pytest.raises(SendError) as info:
        sender.send(_body(1), 1)
    assert info.value.retryable is False
    assert 'certificate' in str(info.value)
    assert tls_collector.spans() == []
