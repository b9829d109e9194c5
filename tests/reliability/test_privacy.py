"""Privacy by default, through ``wrap()`` and the spans as they are written out.

Every test configures the service only through ``FALCON_TRACING_*`` variables and reads
the Zipkin v2 JSON the log reporter wrote, so what is checked is what would leave the
process: a secret must not appear anywhere in that text, not merely be missing from one
tag.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Iterator, NamedTuple

import falcon
import falcon.testing
import opentracing
import pytest
from opentracing import Format

from falcon_tracing_wsgi import wrap

ALL_FORMATS = 'b3,b3single,w3c,baggage,jaeger'
TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
SPAN_ID = '00f067aa0ba902b7'
SECRET = 'S3CR3T-do-not-store'


class Account:
    """Sets secret and harmless response headers; remembers what it would forward."""

    def __init__(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        span = req.context.span
        outbound: dict[str, str] = {}
        opentracing.global_tracer().inject(span.context, Format.HTTP_HEADERS, outbound)
        self.seen['outbound'] = outbound
        self.seen['environ'] = {key: value for key, value in req.env.items()
                                if key.startswith('HTTP_')}
        resp.set_cookie('session', SECRET)
        resp.set_header('X-Served-By', 'web-1')
        resp.media = {'ok': True}


class Failing:
    """Fails with the URL it was calling in the exception text, as HTTP clients do."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, how: str) -> None:
        url = f'http://billing.internal/charge?{req.get_param("name") or "token"}={SECRET}'
        if how == 'responder':
            raise ConnectionError(f'Max retries exceeded with url: {url}')
        if how == 'child-span':
            # opentracing's own error recording (Span/Scope __exit__) logs the exception
            # object and its message: the exporter must redact those too.
            with opentracing.global_tracer().start_active_span('charge'):
                raise ConnectionError(f'calling {url} failed')
        if how == 'credentials':
            raise ConnectionError(f'cannot reach https://admin:{SECRET}@billing.internal/')


class Service(NamedTuple):
    client: falcon.testing.TestClient
    seen: dict[str, Any]
    read: Callable[[], tuple[list[dict[str, Any]], str]]  # (spans, raw JSON text)


@pytest.fixture
def service(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Callable[..., Service]]:
    """Builds a wrapped app from ``FALCON_TRACING_*`` settings; spans go to a file."""
    tracers: list[Any] = []

    def make(**settings: str) -> Service:
        log = tmp_path / f'spans-{len(tracers)}.jsonl'
        env = {'FALCON_TRACING_REPORTER': 'log', 'FALCON_TRACING_LOG_FILE': str(log),
               'FALCON_TRACING_PROPAGATION': ALL_FORMATS}
        env.update({f'FALCON_TRACING_{name.upper()}': value
                    for name, value in settings.items()})
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        seen: dict[str, Any] = {}
        app = falcon.App()
        app.add_route('/account', Account(seen))
        app.add_route('/fail/{how}', Failing())
        wrapped = wrap(app)
        tracer = opentracing.global_tracer()
        tracers.append(tracer)

        def read() -> tuple[list[dict[str, Any]], str]:
            assert tracer.flush(5)
            text = log.read_text() if log.exists() else ''
            return [json.loads(line) for line in text.splitlines()], text
        return Service(falcon.testing.TestClient(wrapped), seen, read)

    yield make
    for tracer in tracers:
        tracer.close(5)


def only_span(service: Service) -> tuple[dict[str, Any], str]:
    spans, text = service.read()
    assert len(spans) == 1, spans
    return spans[0], text


# -- headers ---------------------------------------------------------------------------------

REQUEST_HEADERS = {
    'Authorization': f'Bearer {SECRET}',
    'Proxy-Authorization': f'Basic {SECRET}',
    'Cookie': f'session={SECRET}',
    'X-Api-Key': SECRET,
    'User-Agent': 'curl/8.0',
    'X-Request-Id': 'req-1',
}


def test_no_header_value_is_captured_unless_allow_listed(service: Callable[..., Service]
                                                         ) -> None:
    svc = service()
    assert svc.client.simulate_get('/account', headers=REQUEST_HEADERS).status_code == 200
    span, text = only_span(svc)
    assert not [tag for tag in span['tags'] if tag.startswith('http.request.header.')
                or tag.startswith('http.response.header.')]
    for value in (SECRET, 'curl/8.0', 'req-1', 'web-1'):
        assert value not in text


@pytest.mark.parametrize('request_names, response_names', [
    pytest.param('authorization,proxy-authorization,cookie,x-request-id',
                 'set-cookie,x-served-by', id='lower-case'),
    pytest.param('AUTHORIZATION, Proxy-Authorization ,Cookie,X-Request-Id',
                 'Set-Cookie,X-SERVED-BY', id='any-case-and-spaces'),
])
def test_credentials_are_redacted_even_when_allow_listed(
        service: Callable[..., Service], request_names: str, response_names: str) -> None:
    svc = service(capture_request_headers=request_names,
                  capture_response_headers=response_names)
    svc.client.simulate_get('/account', headers=REQUEST_HEADERS)
    span, text = only_span(svc)
    tags = span['tags']
    assert tags['http.request.header.authorization'] == 'REDACTED'
    assert tags['http.request.header.proxy-authorization'] == 'REDACTED'
    assert tags['http.request.header.cookie'] == 'REDACTED'
    assert tags['http.response.header.set-cookie'] == 'REDACTED'
    # Allow-listed headers that are not credentials are captured as they are.
    assert tags['http.request.header.x-request-id'] == 'req-1'
    assert tags['http.response.header.x-served-by'] == 'web-1'
    assert 'http.request.header.x-api-key' not in tags  # not allow-listed
    assert SECRET not in text


# -- query strings ---------------------------------------------------------------------------

@pytest.mark.parametrize('name', [
    pytest.param(name, id=name) for name in (
        'token', 'access_token', 'Password', 'passwd', 'pwd', 'client_secret', 'api_key',
        'KEY', 'signature', 'X-Amz-Signature', 'sig', 'auth', 'oauth_verifier',
        'credential', 'X-Amz-Credential', 'session_id', 'jwt', 'access%5Ftoken', 'pass%77ord',
        'api+key',
        # names common enough to be redacted by default (short ones match whole words)
        'pass', 'pw', 'user_pw', 'passphrase', 'otp', 'otpCode', 'pin', 'card_pin', 'ssn',
        'credit_card', 'cardNumber', 'cvv', 'private_key', 'bearer', 'sid', 'code',
        'auth_code', 'apiKey', 'authorization')
])
def test_secret_looking_query_values_are_redacted_in_http_url(
        service: Callable[..., Service], name: str) -> None:
    svc = service()
    svc.client.simulate_get('/account', query_string=f'page=2&{name}={SECRET}&q=shoes')
    span, text = only_span(svc)
    assert span['tags']['http.url'].endswith(f'/account?page=2&{name}=REDACTED&q=shoes')
    assert SECRET not in text


@pytest.mark.parametrize('query, expected', [
    pytest.param(f'a=1;password={SECRET};b=2', 'a=1;password=REDACTED;b=2', id='semicolons'),
    pytest.param(f'a=1&pin={SECRET};b=2', 'a=1&pin=REDACTED;b=2', id='mixed-separators'),
    pytest.param('shipping=ups&zipcode=10115&side=left&monkey=george',
                 'shipping=ups&zipcode=10115&side=left&monkey=george',
                 id='short-names-inside-words-are-not-secrets'),
])
def test_query_parameters_are_found_whatever_the_separator(
        service: Callable[..., Service], query: str, expected: str) -> None:
    svc = service()
    svc.client.simulate_get('/account', query_string=query)
    span, text = only_span(svc)
    assert span['tags']['http.url'].endswith(f'/account?{expected}')
    assert SECRET not in text


def test_the_redacted_names_are_configurable(service: Callable[..., Service]) -> None:
    svc = service(redact_query='ssn,dob')
    svc.client.simulate_get('/account', query_string=f'ssn={SECRET}&DOB=1970&token=visible')
    span, text = only_span(svc)
    assert span['tags']['http.url'].endswith('/account?ssn=REDACTED&DOB=REDACTED&token=visible')
    assert SECRET not in text


def test_record_query_false_drops_the_query_string(service: Callable[..., Service]) -> None:
    svc = service(record_query='false')
    svc.client.simulate_get('/account', query_string=f'page=2&name={SECRET}')
    span, text = only_span(svc)
    assert span['tags']['http.url'].endswith('/account')
    assert '?' not in span['tags']['http.url'] and SECRET not in text


# -- inbound sampling and debug flags --------------------------------------------------------

B3_IDS = {'X-B3-TraceId': TRACE_ID, 'X-B3-SpanId': SPAN_ID}
FORCING = [
    pytest.param({**B3_IDS, 'X-B3-Sampled': '1'}, id='b3-sampled'),
    pytest.param({**B3_IDS, 'X-B3-Flags': '1'}, id='b3-flags-debug'),
    pytest.param({**B3_IDS, 'X-B3-Sampled': '1', 'X-B3-Flags': '1'}, id='b3-both'),
    pytest.param({'b3': f'{TRACE_ID}-{SPAN_ID}-d'}, id='b3single-debug'),
    pytest.param({'b3': f'{TRACE_ID}-{SPAN_ID}-1'}, id='b3single-sampled'),
    pytest.param({'b3': 'd'}, id='b3single-debug-only'),
    pytest.param({'traceparent': f'00-{TRACE_ID}-{SPAN_ID}-01'}, id='traceparent-01'),
    pytest.param({'uber-trace-id': f'{TRACE_ID}:{SPAN_ID}:0:1'}, id='jaeger-sampled'),
    pytest.param({'uber-trace-id': f'{TRACE_ID}:{SPAN_ID}:0:3'}, id='jaeger-debug'),
]


@pytest.mark.parametrize('headers', FORCING)
def test_an_untrusting_edge_cannot_be_forced_to_sample(
        service: Callable[..., Service], headers: dict[str, str]) -> None:
    svc = service(trust_inbound='false', sample_rate='0')
    assert svc.client.simulate_get('/account', headers=headers).status_code == 200
    assert svc.read() == ([], '')
    # What the app hands on downstream is our decision (not sampled), in every format.
    outbound = {name.lower(): value for name, value in svc.seen['outbound'].items()}
    assert outbound['x-b3-sampled'] == '0' and 'x-b3-flags' not in outbound
    assert outbound['b3'].split('-')[2] == '0'  # trace-span-sampled-parent
    # The sampled bit (0x01) is clear; a new trace may carry the random flag (0x02).
    assert int(outbound['traceparent'][-2:], 16) & 1 == 0
    assert int(outbound['uber-trace-id'].rsplit(':', 1)[1], 16) & 3 == 0  # sampled, debug
    environ = svc.seen['environ']
    assert environ['HTTP_X_B3_SAMPLED'] == '0' and 'HTTP_X_B3_FLAGS' not in environ
    assert int(environ['HTTP_TRACEPARENT'][-2:], 16) & 1 == 0


@pytest.mark.parametrize('headers', FORCING[:3] + FORCING[6:7])
def test_a_trusting_service_follows_the_same_headers(
        service: Callable[..., Service], headers: dict[str, str]) -> None:
    """The control: the headers above do force sampling when inbound is trusted."""
    svc = service(sample_rate='0')
    svc.client.simulate_get('/account', headers=headers)
    span, _ = only_span(svc)
    assert span['traceId'] == TRACE_ID and span['parentId'] == SPAN_ID


def test_an_untrusting_edge_keeps_the_trace_but_not_the_debug_flag(
        service: Callable[..., Service]) -> None:
    svc = service(trust_inbound='false', sample_rate='1')
    svc.client.simulate_get('/account', headers={**B3_IDS, 'X-B3-Sampled': '0',
                                                 'X-B3-Flags': '1'})
    span, _ = only_span(svc)  # sampled by our rate, though the caller said 0
    assert span['traceId'] == TRACE_ID and span['parentId'] == SPAN_ID
    assert 'debug' not in span
    assert 'x-b3-flags' not in {name.lower() for name in svc.seen['outbound']}


# -- exception texts -------------------------------------------------------------------------

@pytest.mark.parametrize('how, settings, spans', [
    pytest.param('responder', {}, 1, id='responder'),
    pytest.param('child-span', {}, 2, id='child-span-via-opentracing-exit'),
    pytest.param('credentials', {}, 1, id='user-info'),
    pytest.param('responder', {'redact_query': 'acct'}, 1, id='configured-name'),
])
def test_urls_in_recorded_exceptions_are_redacted(
        service: Callable[..., Service], how: str, settings: dict[str, str],
        spans: int) -> None:
    svc = service(**settings)
    name = settings.get('redact_query', 'token')
    result = svc.client.simulate_get(f'/fail/{how}', query_string=f'name={name}')
    assert result.status_code == 500
    written, text = svc.read()
    assert len(written) == spans
    assert 'REDACTED' in text and 'billing.internal' in text  # recorded, but redacted
    assert SECRET not in text
