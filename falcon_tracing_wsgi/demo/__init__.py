"""The demo: a real distributed trace on one machine, with one command.

``python -m falcon_tracing_wsgi demo`` (or ``falcon-tracing demo``):

1. starts a :class:`~falcon_tracing_wsgi.zipkin.collector.ZipkinCollector` (a small
   Zipkin v2 receiver) in the demo's own process on a free ``127.0.0.1`` port;
2. starts two Falcon services under real gunicorn on free loopback ports, configured
   only by environment variables: the *backend* (:mod:`.backend`, run through the
   zero-code entrypoint) and the *frontend* (:mod:`.frontend`, which wraps itself with
   ``wrap()`` and calls the backend through the traced ``requests`` session);
3. waits (bounded) until both listen, sends three requests to the frontend (a call
   across the services, a failing call, a streamed response), waits (bounded) for
   their spans to arrive, and prints each trace as a waterfall;
4. always stops the services (SIGTERM, then SIGKILL after a timeout), also on errors
   and Ctrl-C, and says how to send the same spans to Zipkin, Jaeger or Tempo.

It takes a few seconds and exits 1 unless at least one trace shows the backend's
server span as the child of the frontend's client span.
"""

from __future__ import annotations

from ._runner import REQUESTS, DemoRequest, cross_service_traces, run, services

__all__ = ['run', 'services', 'cross_service_traces', 'REQUESTS', 'DemoRequest']
