"""A ZipkinCollector in its own process, driven from the test process through a pipe.

Why another process: a real collector does its work (reading, parsing and validating
JSON) on other CPUs, not under the GIL of the service it receives spans from. An
in-process collector would slow the healthy baseline down with its own parsing and make
every fault (where the collector does nothing) look faster than health. The child is
started with ``spawn`` (no inherited threads or locks) once per test module and hosts one
collector at a time, so a scenario can stop a collector and start a new one on the same
port, as a restarted collector would.

Each command is a ``(name, args)`` pair answered by one ``('ok', value)`` or
``('error', text)``; every wait is bounded on both sides.
"""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import threading
from typing import Any, Optional

__all__ = ['RemoteCollector', 'free_port']

_REPLY_MARGIN = 5.0  # seconds a command may take beyond its own timeout


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


class _Host:
    """The child's side: one collector at a time and what it received."""

    def __init__(self) -> None:
        self.collector: Any = None
        self.cond = threading.Condition()
        self.spans = 0
        self.trace_ids: set[str] = set()
        self.watched: set[str] = set()

    def on_spans(self, spans: list[dict[str, Any]]) -> None:
        with self.cond:
            self.spans += len(spans)
            self.trace_ids.update(span['traceId'] for span in spans)
            self.cond.notify_all()

    def start(self, port: int, cert: Optional[tuple[str, str]]) -> int:
        from falcon_tracing_wsgi.zipkin.collector import ZipkinCollector
        context = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
        # max_spans=1: the host counts spans itself; the collector keeps none in memory.
        self.collector = ZipkinCollector(port=port, max_spans=1, on_spans=self.on_spans,
                                         ssl_context=context).start()
        return int(self.collector.port)

    def stop(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.collector = None

    def set_fault(self, status: Optional[int], delay: float, hang: bool) -> None:
        self.collector.set_fault(status=status, delay=delay, hang=hang)

    def counts(self) -> tuple[int, int]:
        with self.cond:
            return self.spans, len(self.trace_ids)

    def wait_for_traces(self, trace_ids: list[str], timeout: float) -> bool:
        wanted = set(trace_ids)
        with self.cond:
            return self.cond.wait_for(lambda: wanted <= self.trace_ids, timeout)

    def watch(self, trace_ids: list[str], timeout: float) -> bool:
        self.watched.update(trace_ids)
        with self.cond:
            return self.cond.wait_for(lambda: not self.watched.isdisjoint(self.trace_ids),
                                      timeout)

    def wait_for_spans(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.spans >= count, timeout)

    def reset(self) -> None:
        with self.cond:
            self.spans = 0
            self.trace_ids.clear()
            self.watched.clear()


def _serve(conn: Any) -> None:
    host = _Host()
    try:
        while True:
            try:
                name, args = conn.recv()
            except EOFError:  # the test process went away
                return
            if name == 'quit':
                conn.send(('ok', None))
                return
            try:
                conn.send(('ok', getattr(host, name)(*args)))
            except Exception as exc:  # the parent raises it
                conn.send(('error', f'{type(exc).__name__}: {exc}'))
    finally:
        host.stop()


class RemoteCollector:
    """The parent's side: a proxy whose methods run in the collector process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context('spawn')
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True,
                                        name='zipkin-collector-host')
        self._process.start()
        child.close()
        self._lock = threading.Lock()
        self.port = 0
        self.scheme = 'http'

    def _call(self, name: str, *args: Any, timeout: float = 10.0) -> Any:
        with self._lock:
            self._conn.send((name, args))
            if not self._conn.poll(timeout + _REPLY_MARGIN):
                raise TimeoutError(f'the collector process did not answer {name!r}')
            status, value = self._conn.recv()
        if status != 'ok':
            raise RuntimeError(f'collector process: {name}: {value}')
        return value

    @property
    def url(self) -> str:
        """The spans endpoint of the collector (running or not) on :attr:`port`."""
        return f'{self.scheme}://127.0.0.1:{self.port}/api/v2/spans'

    def start(self, port: int = 0, cert: Optional[tuple[str, str]] = None) -> RemoteCollector:
        """Start a collector on ``port`` (0: a free one); https with ``cert``."""
        self.scheme = 'http' if cert is None else 'https'
        self.port = self._call('start', port, cert)
        return self

    def stop(self) -> None:
        """Stop the collector (the process stays, ready for another start)."""
        self._call('stop')

    def set_fault(self, status: Optional[int] = None, delay: float = 0.0,
                  hang: bool = False) -> None:
        """See :meth:`ZipkinCollector.set_fault`; no arguments clear the fault."""
        self._call('set_fault', status, delay, hang)

    def counts(self) -> tuple[int, int]:
        """(spans received, distinct trace ids received) since the last reset."""
        return tuple(self._call('counts'))  # type: ignore[return-value]

    def wait_for_traces(self, trace_ids: list[str], timeout: float) -> bool:
        """Wait until a span of each of ``trace_ids`` arrived; False on timeout."""
        return bool(self._call('wait_for_traces', list(trace_ids), timeout, timeout=timeout))

    def watch(self, trace_ids: list[str], timeout: float) -> bool:
        """Add ``trace_ids`` to the watched ones; wait until a span of any watched trace
        arrived (False on timeout). Only new ids cross the pipe on each call."""
        return bool(self._call('watch', list(trace_ids), timeout, timeout=timeout))

    def wait_for_spans(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` spans arrived since the last reset."""
        return bool(self._call('wait_for_spans', count, timeout, timeout=timeout))

    def reset(self) -> None:
        """Forget the counts."""
        self._call('reset')

    def close(self) -> None:
        """Stop the collector and end the process (bounded)."""
        try:
            self._call('quit', timeout=5.0)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)
        self._conn.close()

    def __enter__(self) -> RemoteCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
