"""The otlp reporter end to end: wrap() + OTEL_* variables -> OTLP/HTTP -> a local receiver.

The receiver (``tests/otlp.py``) decodes every request with the official
opentelemetry-proto messages, answers as the OTLP/HTTP specification says, and can be
scripted to refuse (429 with ``Retry-After``, 503, 400, ...) or to accept in part.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import opentracing
import pytest

# The OTLP tests decode with the official messages (the [tests] extra installs them).
pytest.importorskip('opentelemetry.proto')
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan  # noqa: E402

from falcon_tracing_wsgi import wrap
from falcon_tracing_wsgi._types import PartialSuccess
from falcon_tracing_wsgi.bootstrap import build_reporter
from falcon_tracing_wsgi.config import TracingConfig
from falcon_tracing_wsgi.export.http import HttpSender
from falcon_tracing_wsgi.export.otlp import (RETRYABLE_STATUSES, JsonEncoder, ProtobufEncoder,
                                             read_json_response, read_protobuf_response)

from tests.otlp import OtlpReceiver, Reply, attributes
from tests.spans import make_span

PROTOCOLS = [pytest.param('http/protobuf', 'application/x-protobuf', id='protobuf'),
             pytest.param('http/json', 'application/json', id='json')]



def _counts(reporter: Any) -> dict[str, int]:
    """The span counters of ``stats()`` (it also shows the byte bound and its use)."""
    stats = reporter.stats()
    return {key: stats[key] for key in ('queued', 'sent', 'dropped', 'failed')}

@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response('404 Not Found' if environ['PATH_INFO'] == '/missing' else '200 OK',
                   [('Content-Type', 'text/plain')])
    return [b'hello']


def _get(app: Any, path: str) -> None:
    environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': path, 'SERVER_NAME': 'localhost',
               'SERVER_PORT': '8000', 'HTTP_HOST': 'localhost:8000', 'wsgi.url_scheme': 'http',
               'REMOTE_ADDR': '127.0.0.1', 'REMOTE_PORT': '50000', 'SERVER_PROTOCOL': 'HTTP/1.1'}
    result = app(environ, lambda status, headers, exc_info=None: None)
    list(result)
    result.close()


@pytest.mark.parametrize('compression', ['gzip', 'none'])
@pytest.mark.parametrize('protocol, content_type', PROTOCOLS)
def test_wrap_exports_otlp_with_only_otel_variables(receiver: OtlpReceiver, monkeypatch: Any,
                                                    protocol: str, content_type: str,
                                                    compression: str) -> None:
    # No FALCON_TRACING_* variable at all: an OTLP endpoint picks the otlp reporter.
    for name, value in {'OTEL_SERVICE_NAME': 'checkout',
                        'OTEL_EXPORTER_OTLP_ENDPOINT': receiver.base_url,
                        'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL': protocol,
                        'OTEL_EXPORTER_OTLP_COMPRESSION': compression,
                        'OTEL_EXPORTER_OTLP_HEADERS': 'x-api-key=s%3Dcret,x-tenant=t1',
                        'OTEL_EXPORTER_OTLP_TIMEOUT': '3000',
                        'OTEL_RESOURCE_ATTRIBUTES': 'deployment.environment=prod%20eu'}.items():
        monkeypatch.setenv(name, value)
    app = wrap(hello_app)
    _get(app, '/hello')
    _get(app, '/missing')
    tracer = opentracing.global_tracer()
    assert tracer.flush(5.0)  # type: ignore[attr-defined]

    spans = receiver.wait_for_spans(2)
    assert [span.name for span in spans] == ['GET', 'GET']
    ok, missing = spans
    assert ok.kind == PbSpan.SPAN_KIND_SERVER and len(ok.trace_id) == 16
    assert ok.status.code == 0 and missing.status.code == 0  # a server 4xx stays unset
    # OTLP spans carry OpenTelemetry's stable HTTP names by default (no OpenTracing ones).
    assert attributes(ok.attributes)['http.response.status_code'] == ('int_value', 200)
    assert attributes(missing.attributes)['http.response.status_code'] == ('int_value', 404)
    assert attributes(ok.attributes)['http.request.method'] == ('string_value', 'GET')
    assert attributes(ok.attributes)['network.peer.port'] == ('int_value', 50000)
    assert not {'span.kind', 'http.status_code', 'http.method'} & set(attributes(ok.attributes))

    (first, *_) = receiver.received
    headers = first.headers
    assert headers['content-type'] == content_type
    assert headers['x-api-key'] == 's=cret' and headers['x-tenant'] == 't1'
    assert headers['b3'] == '0'  # the upload itself is never traced
    assert headers.get('content-encoding') == ('gzip' if compression == 'gzip' else None)
    (resource_spans,) = first.request.resource_spans
    resource = attributes(resource_spans.resource.attributes)
    assert resource['service.name'] == ('string_value', 'checkout')
    assert resource['deployment.environment'] == ('string_value', 'prod eu')
    assert resource['telemetry.sdk.language'] == ('string_value', 'python')
    assert resource['telemetry.sdk.name'] == ('string_value', 'falcon_tracing_wsgi')
    assert resource['process.pid'][0] == 'int_value' and resource['host.name'][1]
    assert resource_spans.scope_spans[0].scope.name == 'falcon_tracing_wsgi'


def test_service_name_from_resource_attributes_when_none_is_set(receiver: OtlpReceiver,
                                                                monkeypatch: Any) -> None:
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'otlp')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', receiver.url)
    monkeypatch.setenv('OTEL_RESOURCE_ATTRIBUTES', 'service.name=from-attributes')
    _get(wrap(hello_app), '/hello')
    assert opentracing.global_tracer().flush(5.0)  # type: ignore[attr-defined]
    receiver.wait_for_spans(1)
    resource = attributes(receiver.received[0].request.resource_spans[0].resource.attributes)
    assert resource['service.name'] == ('string_value', 'from-attributes')


def _reporter(receiver: OtlpReceiver, protocol: str = 'http/protobuf', **options: Any) -> Any:
    config = TracingConfig.from_env({}, reporter='otlp', otlp_endpoint=receiver.url,
                                    otlp_protocol=protocol, otlp_timeout=2.0, **options)
    return build_reporter(config)


@pytest.mark.parametrize('status, retried', [
    pytest.param(status, status in (429, 502, 503, 504), id=str(status))
    for status in (400, 401, 403, 404, 408, 413, 429, 500, 501, 502, 503, 504)])
def test_only_the_otlp_retryable_statuses_are_retried(receiver: OtlpReceiver, status: int,
                                                      retried: bool) -> None:
    receiver.script(Reply(status))
    reporter = _reporter(receiver, max_retries=2)
    reporter.report(make_span(0))
    assert reporter.flush(5.0) is retried
    assert len(receiver.attempts) == (2 if retried else 1)
    assert _counts(reporter) == {'queued': 0, 'sent': 1 if retried else 0, 'dropped': 0,
                                'failed': 0 if retried else 1}
    reporter.close(1.0)


def test_retry_after_is_honoured(receiver: OtlpReceiver) -> None:
    receiver.script(Reply(429, headers=(('Retry-After', '1'),)))
    reporter = _reporter(receiver)
    reporter.report(make_span(0))
    assert reporter.flush(10.0)
    first, second = receiver.attempts
    assert second - first >= 0.95  # the collector's wait, not the 0.1 s backoff
    assert len(receiver.spans()) == 1
    reporter.close(1.0)


def test_a_retry_after_beyond_the_deadline_keeps_the_spans(receiver: OtlpReceiver) -> None:
    receiver.script(Reply(503, headers=(('Retry-After', '30'),)))
    reporter = _reporter(receiver)
    reporter.report(make_span(0))
    started = time.monotonic()
    assert reporter.flush(0.5) is False
    assert time.monotonic() - started < 2.0  # the deadline, not the 30 s asked for
    assert reporter.stats()['queued'] == 1  # back in the queue, not lost
    assert reporter.flush(5.0)  # the next attempt is answered 200
    assert len(receiver.spans()) == 1
    reporter.close(1.0)


@pytest.mark.parametrize('protocol, content_type', PROTOCOLS)
def test_a_partial_success_counts_the_rejected_spans_as_failed(
        receiver: OtlpReceiver, caplog: Any, protocol: str, content_type: str) -> None:
    receiver.script(Reply(200, rejected=2, message='2 spans had no name'))
    reporter = _reporter(receiver, protocol)
    for i in range(3):
        reporter.report(make_span(i))
    with caplog.at_level(logging.WARNING):
        assert reporter.flush(5.0) is False
    assert len(receiver.attempts) == 1  # never retried
    assert _counts(reporter) == {'queued': 0, 'sent': 1, 'dropped': 0, 'failed': 2}
    warnings = [r.getMessage() for r in caplog.records if 'rejected 2 of 3' in r.getMessage()]
    assert len(warnings) == 1 and '2 spans had no name' in warnings[0]
    reporter.close(1.0)


def test_a_warning_without_rejected_spans_is_a_success(receiver: OtlpReceiver) -> None:
    receiver.script(Reply(200, rejected=0, message='deprecated attribute'))
    reporter = _reporter(receiver)
    reporter.report(make_span(0))
    assert reporter.flush(5.0)
    assert reporter.stats()['sent'] == 1
    reporter.close(1.0)


@pytest.mark.parametrize('read, body, expected', [
    pytest.param(read_protobuf_response, b'', None, id='pb-empty'),
    pytest.param(read_protobuf_response, b'\x0a\x06\x08\x03\x12\x02no', PartialSuccess(3, 'no'),
                 id='pb-partial'),
    pytest.param(read_protobuf_response, b'\x0a\x02\x08\x00', None, id='pb-zero-rejected'),
    pytest.param(read_protobuf_response, b'\x0a\x09\x08' + b'\xff' * 9 + b'\x01', None,
                 id='pb-negative-rejected'),
    pytest.param(read_protobuf_response, b'\x0a\x06\x08\x03', None, id='pb-truncated'),
    pytest.param(read_protobuf_response, b'\x0f', None, id='pb-bad-wire-type'),
    pytest.param(read_protobuf_response, b'\x15\x00\x00\x00\x00\x0a\x02\x08\x05',
                 PartialSuccess(5, ''), id='pb-unknown-field-skipped'),
    pytest.param(read_json_response, b'{}', None, id='json-empty'),
    pytest.param(read_json_response,
                 b'{"partialSuccess":{"rejectedSpans":"4","errorMessage":"x"}}',
                 PartialSuccess(4, 'x'), id='json-partial-int64-as-string'),
    pytest.param(read_json_response, b'{"partial_success":{"rejected_spans":1}}',
                 PartialSuccess(1, ''), id='json-original-field-names'),
    pytest.param(read_json_response, b'not json', None, id='json-garbage'),
    pytest.param(read_json_response, b'[1]', None, id='json-not-an-object'),
    pytest.param(read_json_response, b'{"partialSuccess":{"rejectedSpans":"x"}}', None,
                 id='json-bad-count'),
])
def test_reading_the_response(read: Any, body: bytes, expected: Any) -> None:
    assert read(body) == expected


@pytest.mark.parametrize('header, low, high', [
    pytest.param('2', 2.0, 2.0, id='seconds'),
    pytest.param('9999', 60.0, 60.0, id='capped'),
    pytest.param('Wed, 21 Oct 2015 07:28:00 GMT', 0.0, 0.0, id='date-in-the-past'),
    pytest.param('soon', None, None, id='unreadable-uses-backoff'),
])
def test_retry_after_values(receiver: OtlpReceiver, header: str, low: Any, high: Any) -> None:
    receiver.script(Reply(503, headers=(('Retry-After', header),)))
    sender = HttpSender(receiver.url, retry_statuses=RETRYABLE_STATUSES, retry_after=True,
                        content_type='application/x-protobuf')
    encoder = ProtobufEncoder({'service.name': 's'}, '1')
    with pytest.raises(Exception) as raised:
        sender.send(encoder.frame([encoder.encode(make_span(0))]), 1)
    sender.close()
    retry_after = raised.value.retry_after  # type: ignore[attr-defined]
    assert raised.value.retryable  # type: ignore[attr-defined]
    if low is None:
        assert retry_after is None
    else:
        assert low <= retry_after <= high


def test_the_zipkin_sender_keeps_its_rules(receiver: OtlpReceiver) -> None:
    """Without the OTLP options, 500 is retryable and Retry-After is not read."""
    receiver.script(Reply(500, headers=(('Retry-After', '5'),)))
    sender = HttpSender(receiver.url)
    with pytest.raises(Exception) as raised:
        sender.send(b'[]', 0)
    sender.close()
    assert raised.value.retryable and raised.value.retry_after is None  # type: ignore


@pytest.mark.parametrize('cls', [ProtobufEncoder, JsonEncoder])
def test_the_sender_says_the_encoders_content_type(receiver: OtlpReceiver, cls: Any) -> None:
    encoder = cls({'service.name': 's'}, '1')
    sender = HttpSender(receiver.url, content_type=encoder.content_type,
                        parse_response=encoder.read_response)
    assert sender.send(encoder.frame([encoder.encode(make_span(0))]), 1) is None
    sender.close()
    assert receiver.received[0].headers['content-type'] == encoder.content_type
    assert len(receiver.spans()) == 1


def test_grpc_is_refused_for_the_builtin_tracer(monkeypatch: Any) -> None:
    monkeypatch.setenv('FALCON_TRACING_REPORTER', 'otlp')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc')
    from falcon_tracing_wsgi import ConfigError
    with pytest.raises(ConfigError, match='FALCON_TRACING_TRACER=otel'):
        wrap(hello_app)


# -- TLS ------------------------------------------------------------------------------------

@pytest.mark.parametrize('mutual', [pytest.param(False, id='server-certificate'),
                                    pytest.param(True, id='mutual-tls')])
def test_https_with_the_otel_certificate_variables(tls_certificate: tuple[str, str],
                                                   monkeypatch: Any, mutual: bool) -> None:
    import ssl
    cert, key = tls_certificate
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    if mutual:  # the receiver only talks to a client that shows this certificate
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(cert)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE', cert)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY', key)
    with OtlpReceiver(ssl_context=server) as tls:
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', tls.base_url)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_CERTIFICATE', cert)
        _get(wrap(hello_app), '/hello')
        assert opentracing.global_tracer().flush(5.0)  # type: ignore[attr-defined]
        assert tls.base_url.startswith('https://') and len(tls.wait_for_spans(1)) == 1


def test_https_without_the_certificate_variable_refuses_the_endpoint(
        tls_certificate: tuple[str, str]) -> None:
    import ssl
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*tls_certificate)
    with OtlpReceiver(ssl_context=server) as tls:
        reporter = build_reporter(TracingConfig.from_env(
            {'OTEL_EXPORTER_OTLP_ENDPOINT': tls.base_url}))
        reporter.report(make_span(0))
        assert reporter.flush(5.0) is False
        assert reporter.stats()['failed'] == 1 and tls.spans() == []
        reporter.close(1.0)


def test_a_certificate_file_that_is_no_pem_stops_startup(tmp_path: Any,
                                                         monkeypatch: Any) -> None:
    from falcon_tracing_wsgi import ConfigError
    bogus = tmp_path / 'ca.pem'
    bogus.write_text('not a certificate')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', 'https://127.0.0.1:4318')
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_CERTIFICATE', str(bogus))
    with pytest.raises(ConfigError, match='OTEL_EXPORTER_OTLP_'):
        wrap(hello_app)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # 3.12+: fork with threads
def test_a_forked_worker_writes_its_own_process_pid(receiver: OtlpReceiver) -> None:
    """gunicorn --preload: the reporter is built before fork; each child is its own pid."""
    import json
    import os
    reporter = _reporter(receiver)
    reporter.report(make_span(0))
    assert reporter.flush(5.0)  # the parent's resource is built and used first
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            reporter.report(make_span(1))
            os.write(write_end, json.dumps({'pid': os.getpid(),
                                            'flushed': reporter.flush(5.0)}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as pipe:
        child = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and child['flushed'] is True
    pids = [attributes(item.request.resource_spans[0].resource.attributes)['process.pid']
            for item in receiver.received]
    assert pids == [('int_value', os.getpid()), ('int_value', child['pid'])]
    reporter.close(1.0)


@pytest.mark.parametrize('gzip', [False, True], ids=['plain', 'gzip'])
@pytest.mark.parametrize('cls', [ProtobufEncoder, JsonEncoder])
def test_large_otlp_batches_from_the_reused_storage_decode_whole(receiver: OtlpReceiver,
                                                                 cls: Any, gzip: bool) -> None:
    # Batches of more than one framing chunk are written into the pipeline's reused body
    # storage (export/_framing.py): three in a row, each decoded by the official messages.
    from falcon_tracing_wsgi.export.pipeline import BatchReporter
    encoder = cls({'service.name': 's'}, '1')
    reporter = BatchReporter(HttpSender(receiver.url, content_type=encoder.content_type,
                                        parse_response=encoder.read_response, gzip=gzip),
                             encoder, flush_interval=60)
    for round_ in range(3):
        for index in range(round_ * 300, round_ * 300 + 300):
            reporter.report(make_span(index))
        assert reporter.flush(10.0)
        assert reporter.stats()['body_bytes'] > 0
    assert reporter.close(5.0)
    spans = receiver.wait_for_spans(900)
    assert sorted(span.span_id.hex() for span in spans) == [
        f'{index + 1:016x}' for index in range(900)]
    assert len(receiver.received) == 3
