"""``python -m falcon_tracing_wsgi demo``: two services, real gunicorn, a waterfall per trace."""

from __future__ import annotations

import http.client
import signal
from collections.abc import Mapping, Sequence
from time import monotonic as _monotonic
from typing import Any, NamedTuple, Optional, TextIO

from .._waterfall import group_traces, render_trace
from ..config import APP_ENV, SETTINGS
from ..zipkin.collector import ZipkinCollector
from .processes import GunicornProcess, ServerError

__all__ = ['run', 'services', 'DemoRequest', 'REQUESTS', 'cross_service_traces']

FRONTEND = 'frontend'
BACKEND = 'backend'
_TRACE_HEADER = 'X-Trace-Id'
_READY_TIMEOUT = 30.0
_REQUEST_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0


class DemoRequest(NamedTuple):
    """One request the demo sends to the frontend, and the spans its trace should have."""

    path: str
    what: str
    spans: int


REQUESTS = (
    DemoRequest('/checkout/42', 'frontend -> backend, with a span inside the backend', 4),
    DemoRequest('/broken', 'the backend fails: 500 there, 502 at the frontend', 3),
    DemoRequest('/stream', 'a streamed body; each chunk calls the backend', 10),
)

_BACKENDS_TEXT = """\
These services are configured by environment variables only. To send the same spans to
a real tracing backend, change one variable and run them again:

  Zipkin  FALCON_TRACING_ZIPKIN_URL=http://localhost:9411/api/v2/spans
          e.g. docker run -p 9411:9411 openzipkin/zipkin:3.6.1   (UI: http://localhost:9411)
  Jaeger  FALCON_TRACING_ZIPKIN_URL=http://localhost:9411/api/v2/spans
          Jaeger v2's Zipkin receiver, on by default, e.g. docker run -p 16686:16686
          -p 9411:9411 jaegertracing/jaeger:2.12.0   (UI: http://localhost:16686)
  Tempo   FALCON_TRACING_ZIPKIN_URL=http://localhost:9411/api/v2/spans
          with the zipkin receiver enabled (distributor.receivers.zipkin); view in Grafana

Without FALCON_TRACING_ZIPKIN_URL the spans go to standard error as Zipkin v2 JSON
lines; `python -m falcon_tracing_wsgi view FILE` draws them like above.
"""


def cross_service_traces(spans: Sequence[dict[str, Any]]) -> list[str]:
    """Trace ids in which a frontend CLIENT span is the parent of a backend SERVER span.

    That is the proof that the context crossed the process boundary: the backend's
    server span names, as its parent, the client span the frontend made for the call.
    """
    by_id = {(span['traceId'], span['id']): span for span in spans}
    found = []
    for span in spans:
        parent = by_id.get((span['traceId'], span.get('parentId')))
        if (parent is not None and span.get('kind') == 'SERVER'
                and _service(span) == BACKEND and parent.get('kind') == 'CLIENT'
                and _service(parent) == FRONTEND and span['traceId'] not in found):
            found.append(span['traceId'])
    return found


def services(env: Mapping[str, str]) -> tuple[GunicornProcess, GunicornProcess]:
    """The demo's backend and frontend (not started), each with ``env`` plus its name.

    The tests against real Zipkin and Jaeger servers run the same two services with
    the tracing variables that point them there.
    """
    backend = GunicornProcess(
        'falcon_tracing_wsgi.entrypoint:app', name=BACKEND,
        env=_isolated({'FALCON_TRACING_SERVICE_NAME': BACKEND,
                       APP_ENV: 'falcon_tracing_wsgi.demo.backend:create_app()', **env}),
        options=['--workers', '1', '--graceful-timeout', '5'])
    frontend = GunicornProcess(
        f'falcon_tracing_wsgi.demo.frontend:application({backend.url!r})', name=FRONTEND,
        env=_isolated({'FALCON_TRACING_SERVICE_NAME': FRONTEND, **env}),
        options=['--workers', '1', '--graceful-timeout', '5'])
    return backend, frontend


def _isolated(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus every other tracing variable set to empty, which means "not set".

    The services inherit the user's environment; a ``FALCON_TRACING_SAMPLE_RATE=0`` or
    ``OTEL_SDK_DISABLED=true`` left in the shell must not change what the demo shows.
    """
    names = {setting.env for setting in SETTINGS} | {APP_ENV}
    names |= {name for setting in SETTINGS for name in setting.fallbacks}
    return {**dict.fromkeys(sorted(names), ''), **env}


def _service(span: dict[str, Any]) -> Optional[str]:
    return (span.get('localEndpoint') or {}).get('serviceName')


class _Demo:
    def __init__(self, out: TextIO, width: int, color: bool) -> None:
        self.out = out
        self.width = width
        self.color = color
        self.collector = ZipkinCollector()
        self.servers: list[GunicornProcess] = []

    def say(self, text: str = '') -> None:
        self.out.write(text + '\n')
        self.out.flush()

    def start(self) -> tuple[GunicornProcess, GunicornProcess]:
        self.collector.start()
        common = {'FALCON_TRACING_ZIPKIN_URL': self.collector.url,
                  'FALCON_TRACING_FLUSH_INTERVAL': '0.1',
                  'FALCON_TRACING_RESPONSE_TRACE_HEADER': _TRACE_HEADER}
        backend, frontend = services(common)
        self.servers = [backend, frontend]
        self.say('falcon-tracing-wsgi demo')
        self.say(f'  collector  {self.collector.url}  (in this process: a Zipkin v2 receiver)')
        self.say(f'  {BACKEND:<9}  {backend.url}  gunicorn + the zero-code entrypoint '
                 '(FALCON_TRACING_APP)')
        self.say(f'  {FRONTEND:<9}  {frontend.url}  gunicorn + wrap() in the app, calling '
                 'the backend with TracedSession')
        self.say('  both with -c python:falcon_tracing_wsgi.gunicorn and only environment '
                 'variables:')
        for name, value in (('FALCON_TRACING_SERVICE_NAME', 'frontend | backend'),
                            *common.items()):
            self.say(f'    {name}={value}')
        for server in self.servers:
            server.start()
        took = max(server.wait_ready(_READY_TIMEOUT) + server.wait_workers(1, _READY_TIMEOUT)
                   for server in self.servers)
        self.say(f'  listening after {took:.1f} s')
        return backend, frontend

    def send(self, frontend: GunicornProcess) -> dict[str, str]:
        """Send the requests; return {trace id: path} in the order sent."""
        self.say()
        traces: dict[str, str] = {}
        for request in REQUESTS:
            status, trace_id, size = _get(frontend.port, request.path)
            self.say(f'  GET {request.path:<14} -> {status}  {size:>4} bytes  '
                     f'({request.what})')
            if trace_id:
                traces[trace_id] = request.path
        return traces

    def show(self, traces: dict[str, str]) -> int:
        expected = sum(request.spans for request in REQUESTS)
        started = _monotonic()
        complete = self.collector.wait_for_spans(expected, timeout=10.0)
        spans = self.collector.spans()
        self.say(f'\n{len(spans)} spans received in {_monotonic() - started:.1f} s'
                 f'{"" if complete else f" (expected {expected})"}\n')
        grouped = group_traces(spans)
        # The traces of the requests first, in the order they were sent.
        order = [t for t in traces if t in grouped] + [t for t in grouped if t not in traces]
        for trace_id in order:
            self.say(render_trace(grouped[trace_id], width=self.width, color=self.color))
            self.say()
        linked = cross_service_traces(spans)
        if not linked:
            self.say('FAILED: no trace links a frontend CLIENT span to a backend SERVER '
                     'span; the context did not cross the services.')
            return 1
        self.say(f'{len(linked)} of {len(grouped)} traces cross from {FRONTEND} to '
                 f'{BACKEND} (the backend span\'s parent is the frontend\'s client span).\n')
        self.say(_BACKENDS_TEXT)
        return 0

    def stop(self) -> None:
        started = _monotonic()
        running = [s for s in self.servers if s.process is not None and s.process.poll() is None]
        for server in running:  # SIGTERM to all first, so that they stop in parallel
            server.send_signal(signal.SIGTERM)
        try:
            for server in self.servers:
                server.close()
        finally:
            self.collector.stop()
        if running:
            self.say(f'stopped {" and ".join(s.name for s in running)} '
                     f'in {_monotonic() - started:.1f} s')

    def server_logs(self) -> str:
        return '\n'.join(f'--- {server.name} log ---\n{server.log()}' for server in self.servers)


def _get(port: int, path: str) -> tuple[int, Optional[str], int]:
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=_REQUEST_TIMEOUT)
    try:
        connection.request('GET', path)
        response = connection.getresponse()
        body = response.read()
        return response.status, response.getheader(_TRACE_HEADER), len(body)
    finally:
        connection.close()


def run(out: TextIO, *, width: int = 100, color: bool = False) -> int:
    """Run the demo, writing to ``out``.

    Returns:
        0 when a cross-service trace was shown, 1 when it could not be (a service did
        not start, a request failed, or no trace crossed the services), 2 when a
        dependency is missing, 130 when interrupted (Ctrl-C).
    """
    missing = [name for name in ('falcon', 'gunicorn', 'requests') if not _importable(name)]
    if missing:
        out.write(f'the demo needs {", ".join(missing)}: '
                  "pip install 'falcon-tracing-wsgi[demo]'\n")
        return 2
    demo = _Demo(out, width, color)
    try:
        _, frontend = demo.start()
        traces = demo.send(frontend)
        return demo.show(traces)
    except KeyboardInterrupt:
        out.write('\ninterrupted; stopping the services\n')
        return 130
    except (ServerError, OSError, http.client.HTTPException) as exc:
        out.write(f'\nFAILED: {exc}\n')
        if not isinstance(exc, ServerError):
            out.write(demo.server_logs() + '\n')
        return 1
    finally:
        demo.stop()


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
