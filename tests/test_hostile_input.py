"""Hostile requests through the full wrapper: tracing never changes what the client gets.

The service is ``wrap()`` of a small Falcon app with this package's tracer, every
propagation format (``b3,b3single,w3c,baggage,jaeger``), the trace id exposed in a
response header and spans written as Zipkin v2 JSON lines. Every hostile environ is run
through the same app twice, once wrapped and once not, and:

* no exception escapes, and the wrapped response (status, headers, body) is the app's
  own, apart from the trace id header: tracing never causes a 5xx;
* the trace id header is lower-case hex of 16 or 32 digits, whatever came in, and no
  response header carries a control character;
* what tracing writes for downstream (propagation headers written back into the
  environ, and an outbound ``inject``) is printable ASCII of bounded size;
* an invalid incoming context gives a fresh trace (no parent, an id the client did not
  send); a valid one is continued with lower-case ids;
* every reported span validates against Zipkin's v2 schema;
* time and memory per request stay bounded (table cases: measured against the
  unwrapped app, with :mod:`tracemalloc` for memory).

The table covers each header with the attacks named in the issue; hypothesis then
mixes them (``derandomize=True``, a fixed number of examples, so CI is repeatable).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re
import time
import tracemalloc
from typing import Any, Iterator, NamedTuple, Optional
from unittest import mock

import falcon
import opentracing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentracing import Format

from falcon_tracing_wsgi import wrap
from falcon_tracing_wsgi.zipkin import validate_span

from .harness import make_environ

FORMATS = 'b3,b3single,w3c,baggage,jaeger'
TRACE_HEADER = 'X-Trace-Id'
BODY = b'the app answered'
TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
SPAN = '00f067aa0ba902b7'
TRACEPARENT = f'00-{TRACE}-{SPAN}-01'
MB = 1024 * 1024
FRESH = None  # the expectation "a new trace"
ANY = 'any'   # either outcome is legitimate (hypothesis input)

_LOWER_HEX_ID = re.compile(r'[0-9a-f]{16}|[0-9a-f]{32}').fullmatch
_PRINTABLE_ASCII = re.compile(r'[\x20-\x7e]*').fullmatch
_CONTROL = re.compile(r'[\x00-\x1f\x7f]').search
#: The longest value anything may forward downstream (W3C baggage's 8192 + slack).
MAX_FORWARDED = 8192 + 64
#: Bounds per request beyond the unwrapped app's own cost. The slowest case, a 1 MiB
#: query string, costs ~0.12 s here (the redaction search is linear, ~110 ns per byte);
#: the bound is what catches a parser that goes quadratic, which would take minutes.
EXTRA_SECONDS = 1.0
EXTRA_BYTES = 256 * 1024


class Sink:
    """Answers every path with the same body; remembers what it would forward."""

    def __init__(self) -> None:
        self.forwarded: dict[str, str] = {}

    def __call__(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        self.forwarded = {key: value for key, value in req.env.items()
                          if key.startswith('HTTP_') and isinstance(value, str)}
        span = getattr(req.context, 'span', None)
        if span is not None:
            outbound: dict[str, str] = {}
            opentracing.global_tracer().inject(span.context, Format.HTTP_HEADERS, outbound)
            self.forwarded.update({f'outbound {k}': v for k, v in outbound.items()})
        resp.content_type = 'text/plain'
        resp.set_header('X-App', 'yes')
        resp.data = BODY


def _app(sink: Sink) -> falcon.App:
    app = falcon.App()
    app.add_sink(sink, '')
    return app


class Response(NamedTuple):
    status: Optional[str]
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float
    peak: int


def _run(app: Any, environ: dict[str, Any], measure_memory: bool) -> Response:
    """Call a WSGI app like a server; any exception fails the test."""
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        seen[:] = [status, list(headers)]
        return lambda data: None

    with _peak_memory(measure_memory) as peak:
        start = time.perf_counter()
        result = app(environ, start_response)
        try:
            body = b''.join(result)
        finally:
            if hasattr(result, 'close'):
                result.close()
        seconds = time.perf_counter() - start
    status, headers = (seen[0], seen[1]) if seen else (None, [])
    return Response(status, headers, body, seconds, peak[0] if peak else 0)


@contextlib.contextmanager
def _peak_memory(enabled: bool) -> Iterator[list[int]]:
    out: list[int] = []
    if not enabled:
        yield out
        return
    tracemalloc.start()
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


class Service:
    """The wrapped app and an unwrapped twin; spans go to a JSON-lines file."""

    def __init__(self, log: pathlib.Path) -> None:
        self.log = log
        self.sink = Sink()
        self.plain = _app(Sink())
        self.wrapped = wrap(_app(self.sink))
        self.tracer: Any = opentracing.global_tracer()
        self._read = 0

    def spans(self) -> list[dict[str, Any]]:
        """The spans written since the last call."""
        assert self.tracer.flush(10)
        if not self.log.exists():
            return []
        with open(self.log, 'rb') as lines:
            lines.seek(self._read)
            data = lines.read()
        self._read += len(data)
        return [json.loads(line) for line in data.splitlines()]

    def check(self, overrides: dict[str, Any], expect: Any = ANY,
              measure: bool = False) -> Optional[dict[str, Any]]:
        """Run one hostile request both ways and check every promise; return its span."""
        plain = _run(self.plain, _environ(overrides), measure)
        traced = _run(self.wrapped, _environ(overrides), measure)

        # The app's own response, and only our trace id header added.
        assert traced.status == plain.status and traced.body == plain.body
        assert plain.status is not None and not plain.status.startswith('5')
        added = [value for name, value in traced.headers if name == TRACE_HEADER]
        assert [h for h in traced.headers if h[0] != TRACE_HEADER] == plain.headers
        assert len(added) == 1 and _LOWER_HEX_ID(added[0]), added
        assert not any(_CONTROL(name + value) for name, value in traced.headers)

        # What tracing wrote for downstream is clean and bounded: the outbound headers
        # and environ values it replaced (a header it left alone is the app's own input).
        for name, value in self.sink.forwarded.items():
            if name.startswith('outbound ') or overrides.get(name) != value:
                assert _PRINTABLE_ASCII(value) and len(value) <= MAX_FORWARDED, \
                    (name, value[:200])

        # Bounded cost beyond the app's own.
        assert traced.seconds < plain.seconds + EXTRA_SECONDS
        if measure:
            size = sum(len(v) for v in overrides.values() if isinstance(v, str))
            assert traced.peak <= plain.peak + 2 * size + EXTRA_BYTES, (traced.peak, plain.peak)

        spans = self.spans()
        assert len(spans) <= 1
        for span in spans:
            assert validate_span(span) == [], span
            assert span['traceId'] == added[0]
        span = spans[0] if spans else None
        if expect is FRESH:
            assert span is not None and 'parentId' not in span
            sent = ' '.join(v.lower() for v in overrides.values() if isinstance(v, str))
            assert span['traceId'] not in sent
        elif expect is not ANY:
            trace_id, parent_id = expect
            assert span is not None
            assert (span['traceId'], span.get('parentId')) == (trace_id, parent_id)
        return span


_PROPAGATION_KEYS = frozenset((
    'HTTP_X_B3_TRACEID', 'HTTP_X_B3_SPANID', 'HTTP_X_B3_PARENTSPANID', 'HTTP_X_B3_SAMPLED',
    'HTTP_X_B3_FLAGS', 'HTTP_B3', 'HTTP_TRACEPARENT', 'HTTP_TRACESTATE', 'HTTP_BAGGAGE',
    'HTTP_UBER_TRACE_ID'))


def _environ(overrides: dict[str, Any]) -> dict[str, Any]:
    environ = make_environ('/items/1', HTTP_HOST='shop.example')
    environ['wsgi.input'] = io.BytesIO(b'')
    environ.update(overrides)
    return environ


@contextlib.contextmanager
def _service(folder: pathlib.Path) -> Iterator[Service]:
    log = folder / 'spans.jsonl'
    env = {'FALCON_TRACING_PROPAGATION': FORMATS, 'FALCON_TRACING_REPORTER': 'log',
           'FALCON_TRACING_LOG_FILE': str(log),
           'FALCON_TRACING_RESPONSE_TRACE_HEADER': TRACE_HEADER,
           'FALCON_TRACING_CAPTURE_REQUEST_HEADERS': 'user-agent,x-request-id'}
    with mock.patch.dict(os.environ, env):
        service = Service(log)
    try:
        yield service
    finally:
        service.tracer.close(5)


@pytest.fixture
def service(tmp_path: pathlib.Path) -> Iterator[Service]:
    with _service(tmp_path) as running:
        yield running


# -- the table ---------------------------------------------------------------------------------

HUGE = 'a' * MB
UTF8_AS_LATIN1 = 'é✓'.encode().decode('latin-1')  # what WSGI gives for UTF-8 bytes
CONTINUED = (TRACE, SPAN)


def case(id: str, expect: Any = FRESH, **environ: str) -> Any:
    return pytest.param(environ, expect, id=id)


CASES = [
    # huge values
    case('b3-multi-huge', HTTP_X_B3_TRACEID=HUGE, HTTP_X_B3_SPANID=HUGE),
    case('b3-huge', HTTP_B3=HUGE),
    case('b3-huge-dashes', HTTP_B3='-' * MB),
    case('traceparent-huge', HTTP_TRACEPARENT=HUGE),
    case('traceparent-huge-valid-prefix', HTTP_TRACEPARENT=TRACEPARENT + '-' + HUGE),
    case('tracestate-huge', CONTINUED, HTTP_TRACEPARENT=TRACEPARENT,
         HTTP_TRACESTATE='k=' + 'v' * MB),
    case('baggage-huge', HTTP_BAGGAGE='k=' + 'v' * MB),
    case('uber-trace-id-huge', HTTP_UBER_TRACE_ID=HUGE),
    case('uberctx-huge', HTTP_UBERCTX_USER='v' * MB),
    case('jaeger-debug-id-huge', HTTP_JAEGER_DEBUG_ID=HUGE),
    case('captured-header-huge', HTTP_USER_AGENT=HUGE),
    # non-ASCII, latin-1 decoded bytes, control characters, CR/LF
    case('traceparent-non-ascii', HTTP_TRACEPARENT=TRACEPARENT[:-2] + 'é1'),
    case('b3-latin1-bytes', HTTP_B3=f'{TRACE}-{SPAN[:-2]}{UTF8_AS_LATIN1}'),
    case('baggage-latin1-bytes', HTTP_BAGGAGE=f'user={UTF8_AS_LATIN1},ok=1'),
    case('uberctx-latin1-bytes', HTTP_UBERCTX_USER=UTF8_AS_LATIN1),
    case('b3-multi-nul', HTTP_X_B3_TRACEID=TRACE + '\x00', HTTP_X_B3_SPANID=SPAN),
    case('traceparent-tab-inside', HTTP_TRACEPARENT=TRACEPARENT.replace('-', '\t', 1)),
    case('b3-crlf-header-injection', HTTP_B3=f'{TRACE}-{SPAN}\r\nSet-Cookie: a=b'),
    case('b3-multi-crlf', HTTP_X_B3_TRACEID=f'{TRACE}\r\nX-Evil: 1', HTTP_X_B3_SPANID=SPAN),
    case('baggage-crlf', HTTP_BAGGAGE='k=v\r\nSet-Cookie: a=b,k2=v2'),
    case('tracestate-crlf', CONTINUED, HTTP_TRACEPARENT=TRACEPARENT,
         HTTP_TRACESTATE='a=b\r\nSet-Cookie: x=y'),
    case('uberctx-control', HTTP_UBERCTX_USER='a\x01b\x7fc\r\nd'),
    case('jaeger-debug-id-crlf', HTTP_JAEGER_DEBUG_ID='x\r\nSet-Cookie: a=b'),
    case('captured-header-control', HTTP_X_REQUEST_ID='r\x00\r\n\x1b[31mred'),
    # duplicate headers (joined with commas under WSGI)
    case('traceparent-duplicate', HTTP_TRACEPARENT=f'{TRACEPARENT},{TRACEPARENT}'),
    case('b3-duplicate-first-wins', CONTINUED, HTTP_B3=f'{TRACE}-{SPAN}-1,{"1" * 32}-{SPAN}'),
    case('b3-multi-duplicate-first-wins', CONTINUED, HTTP_X_B3_TRACEID=f'{TRACE},{"f" * 32}',
         HTTP_X_B3_SPANID=f'{SPAN},{"e" * 16}'),
    case('uber-trace-id-duplicate', HTTP_UBER_TRACE_ID=f'{TRACE}:{SPAN}:0:1,{TRACE}:{SPAN}:0:1'),
    case('tracestate-duplicate-keys', CONTINUED, HTTP_TRACEPARENT=TRACEPARENT,
         HTTP_TRACESTATE='a=1,a=2'),
    # thousands of members
    case('tracestate-5000-members', CONTINUED, HTTP_TRACEPARENT=TRACEPARENT,
         HTTP_TRACESTATE=','.join(f'k{i}=v{i}' for i in range(5000))),
    case('baggage-5000-members', HTTP_BAGGAGE=','.join(f'k{i}=v{i}' for i in range(5000))),
    case('baggage-5000-commas', HTTP_BAGGAGE=',' * 5000),
    case('baggage-5000-properties', HTTP_BAGGAGE='k=v' + ';p' * 5000),
    case('uberctx-2000-items', **{f'HTTP_UBERCTX_K{i}': f'v{i}' for i in range(2000)}),
    # all-zero ids
    case('traceparent-zero-trace', HTTP_TRACEPARENT=f'00-{"0" * 32}-{SPAN}-01'),
    case('traceparent-zero-parent', HTTP_TRACEPARENT=f'00-{TRACE}-{"0" * 16}-01'),
    case('b3-multi-zero-trace', HTTP_X_B3_TRACEID='0' * 32, HTTP_X_B3_SPANID=SPAN),
    case('b3-multi-zero-span', HTTP_X_B3_TRACEID=TRACE, HTTP_X_B3_SPANID='0' * 16),
    case('b3-zero-ids', HTTP_B3=f'{"0" * 32}-{"0" * 16}-1'),
    case('uber-trace-id-zero-trace', HTTP_UBER_TRACE_ID=f'0:{SPAN}:0:1'),
    case('uber-trace-id-zero-span', HTTP_UBER_TRACE_ID=f'{TRACE}:0:0:1'),
    # upper-case hex: B3 and Jaeger normalise it, W3C forbids it
    case('traceparent-upper-case', HTTP_TRACEPARENT=TRACEPARENT.upper()),
    case('b3-upper-case', CONTINUED, HTTP_B3=f'{TRACE.upper()}-{SPAN.upper()}-1'),
    case('b3-multi-upper-case', CONTINUED, HTTP_X_B3_TRACEID=TRACE.upper(),
         HTTP_X_B3_SPANID=SPAN.upper()),
    case('uber-trace-id-upper-case', CONTINUED,
         HTTP_UBER_TRACE_ID=f'{TRACE.upper()}:{SPAN.upper()}:0:1'),
    # wrong lengths
    case('b3-multi-trace-15', HTTP_X_B3_TRACEID=TRACE[:15], HTTP_X_B3_SPANID=SPAN),
    case('b3-multi-trace-17', HTTP_X_B3_TRACEID=TRACE[:17], HTTP_X_B3_SPANID=SPAN),
    case('b3-multi-trace-33', HTTP_X_B3_TRACEID=TRACE + 'a', HTTP_X_B3_SPANID=SPAN),
    case('b3-multi-span-15', HTTP_X_B3_TRACEID=TRACE, HTTP_X_B3_SPANID=SPAN[:15]),
    case('b3-span-17', HTTP_B3=f'{TRACE}-{SPAN}a-1'),
    case('b3-too-many-fields', HTTP_B3=f'{TRACE}-{SPAN}-1-{SPAN}-{SPAN}'),
    case('traceparent-54', HTTP_TRACEPARENT=TRACEPARENT[:-1]),
    case('traceparent-56', HTTP_TRACEPARENT=TRACEPARENT + '0'),
    case('traceparent-short-trace', HTTP_TRACEPARENT=f'00-{TRACE[:31]}-{SPAN}-01'),
    case('uber-trace-id-33', HTTP_UBER_TRACE_ID=f'{TRACE}a:{SPAN}:0:1'),
    case('uber-trace-id-three-fields', HTTP_UBER_TRACE_ID=f'{TRACE}:{SPAN}:1'),
    # hostile request line and socket fields
    case('path-huge', PATH_INFO='/' + 'p' * MB),
    case('path-traversal-and-nul', PATH_INFO='/../../etc/passwd\x00.png'),
    case('path-crlf', PATH_INFO='/a\r\nSet-Cookie: x=y'),
    case('path-latin1-bytes', PATH_INFO='/' + UTF8_AS_LATIN1),
    case('path-empty', PATH_INFO=''),
    case('path-no-slash', PATH_INFO='items'),
    case('query-huge', QUERY_STRING='q=' + 'x' * MB),
    case('query-10000-params', QUERY_STRING='&'.join(f'token{i}=s{i}' for i in range(10000))),
    case('query-bad-escapes', QUERY_STRING='a=%ZZ&%=&&==&token=%E9%00'),
    case('query-control', QUERY_STRING='a=\x00\r\n\x1b&password=x'),
    case('remote-addr-garbage', REMOTE_ADDR='not-an-ip'),
    case('remote-addr-out-of-range', REMOTE_ADDR='999.1.1.1'),
    case('remote-addr-scoped-ipv6', REMOTE_ADDR='fe80::1%eth0'),
    case('remote-addr-crlf', REMOTE_ADDR='1.2.3.4\r\nX: y'),
    case('remote-addr-huge', REMOTE_ADDR='1' * MB),
    case('remote-addr-empty', REMOTE_ADDR=''),
    case('remote-port-negative', REMOTE_PORT='-1'),
    case('remote-port-too-big', REMOTE_PORT='99999'),
    case('remote-port-text', REMOTE_PORT='http'),
    case('remote-port-zero', REMOTE_PORT='0'),
    case('remote-port-huge', REMOTE_PORT='9' * 5000),
    case('host-crlf', HTTP_HOST='shop\r\nSet-Cookie: a=b'),
    case('host-huge', HTTP_HOST='h' * MB),
    case('host-latin1-bytes', HTTP_HOST=UTF8_AS_LATIN1 + ':80'),
    case('host-with-space-and-port', HTTP_HOST='a b:-1'),
]


@pytest.mark.parametrize('overrides, expect', CASES)
def test_hostile_request_gets_the_apps_own_response(service: Service,
                                                    overrides: dict[str, str],
                                                    expect: Any) -> None:
    span = service.check(overrides, expect, measure=True)
    assert span is not None  # sampled: nothing in the table says otherwise


def test_the_table_covers_every_propagation_header() -> None:
    keys = {key for param in CASES for key in param.values[0]}
    assert _PROPAGATION_KEYS - {'HTTP_X_B3_PARENTSPANID', 'HTTP_X_B3_SAMPLED',
                                'HTTP_X_B3_FLAGS'} <= keys
    assert {'PATH_INFO', 'QUERY_STRING', 'REMOTE_ADDR', 'REMOTE_PORT', 'HTTP_HOST'} <= keys


# -- property-based ------------------------------------------------------------------------

#: Every WSGI header value is latin-1 text: one character per byte.
LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
HEX = '0123456789abcdefABCDEF'


@st.composite
def _id(draw: Any, widths: tuple[int, ...] = (16, 32)) -> str:
    width = draw(st.sampled_from(widths + (0, 1, 15, 17, 31, 33)))
    value = draw(st.text(alphabet=HEX, min_size=width, max_size=width))
    return draw(st.sampled_from((value, '0' * width, value.upper(), value + draw(LATIN1))))


@st.composite
def _structured(draw: Any, key: str) -> str:
    """Values that look almost right for ``key``: one field off, odd separators."""
    trace, span, parent = draw(_id()), draw(_id((16,))), draw(_id((16,)))
    flag = draw(st.sampled_from(('0', '1', 'd', '01', '00', '03', 'ff', '', 'true')))
    sep = draw(st.sampled_from(('-', ':', ',', ' ', '')))
    if key == 'HTTP_TRACEPARENT':
        version = draw(st.sampled_from(('00', '01', 'ff', 'zz', '0')))
        return sep.join((version, trace, span, flag)) if sep != '-' else \
            f'{version}-{trace}-{span}-{flag}'
    if key == 'HTTP_B3':
        return '-'.join(draw(st.lists(st.sampled_from((trace, span, flag, parent)),
                                      max_size=5)))
    if key == 'HTTP_UBER_TRACE_ID':
        return ':'.join(draw(st.lists(st.sampled_from((trace, span, parent, flag)),
                                      max_size=5)))
    if key in ('HTTP_BAGGAGE', 'HTTP_TRACESTATE'):
        member = st.builds(lambda k, v: f'{k}={v}', st.text(LATIN1, max_size=8),
                           st.text(LATIN1, max_size=8))
        return ','.join(draw(st.lists(member, max_size=50)))
    return draw(st.sampled_from((trace, span, parent, flag)))


_KEYS = sorted(_PROPAGATION_KEYS | {'HTTP_UBERCTX_USER', 'HTTP_JAEGER_DEBUG_ID'})


@st.composite
def hostile_environs(draw: Any) -> dict[str, str]:
    environ: dict[str, str] = {}
    for key in draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=6)):
        environ[key] = draw(st.one_of(_structured(key), st.text(LATIN1, max_size=200)))
        if draw(st.booleans()):  # the same header twice, as WSGI joins them
            environ[key] += ',' + draw(st.one_of(_structured(key), st.text(LATIN1, max_size=60)))
    for key in draw(st.lists(st.sampled_from(('PATH_INFO', 'QUERY_STRING', 'REMOTE_ADDR',
                                              'REMOTE_PORT', 'HTTP_HOST')), unique=True,
                             max_size=3)):
        environ[key] = draw(st.text(LATIN1, max_size=200))
    return environ


# NOTE: the service fixture is built once for all examples on purpose (each example reads
# only the spans written since the previous one), hence the suppressed health check.
@settings(derandomize=True, max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(environ=hostile_environs())
def test_any_hostile_environ_gets_the_apps_own_response(service: Service,
                                                         environ: dict[str, str]) -> None:
    span = service.check(environ)
    if span is not None and 'parentId' in span:
        # A continued trace: its ids came from the request (case and zero padding aside).
        sent = ' '.join(environ.values()).lower()
        assert span['parentId'].lstrip('0') in sent
        assert span['traceId'].lstrip('0') in sent
