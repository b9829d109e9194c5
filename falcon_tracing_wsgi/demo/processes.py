"""Run gunicorn as a child process: on a free loopback port, bounded, always stopped.

The demo and the end-to-end tests start real gunicorn servers with
:class:`GunicornProcess`::

    with GunicornProcess('myservice.wsgi:app', env={'FALCON_TRACING_SERVICE_NAME': 'api'},
                         options=['--workers', '2']) as server:
        server.wait_ready(timeout=15)
        urllib.request.urlopen(server.url + '/hello')
    # SIGTERM, a bounded wait, then SIGKILL of the whole process group if needed

Decisions:

* **The environment goes through gunicorn's ``--env``**: the child inherits the
  caller's environment untouched and gunicorn sets the given variables in the master
  before it loads the configuration or the app, so the workers (and ``--preload``)
  see them. (Only ``config.py`` reads the process environment.)
* **Its own session** (process group): Ctrl-C in a terminal reaches the caller only,
  which then stops the server itself with SIGTERM (a graceful shutdown that runs the
  ``worker_exit`` and ``on_exit`` hooks), and a server that does not stop in time is
  killed together with its workers.
* **Readiness is a bounded loop of connection attempts**, pausing by waiting on the
  process itself, so a server that dies at boot is reported at once, with its log.
  The master listens before its workers have booted; :meth:`GunicornProcess.wait_workers`
  waits for those too (Linux), because gunicorn has a race: a worker that receives
  SIGTERM between its fork and the moment it installs its own signal handlers ignores
  it, and the graceful shutdown then waits for ``--graceful-timeout``.
* **The log goes to a temporary file**, never a pipe that could fill up and block the
  server; :meth:`GunicornProcess.log` reads it.
* ``--no-control-socket`` on gunicorn 25.1+, whose default control socket path is
  shared by every server of the user (two servers at once would fight over it).
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from time import monotonic as _monotonic
from typing import IO, Any, Optional

__all__ = ['ChildProcess', 'GunicornProcess', 'ServerError', 'free_port']

_HOST = '127.0.0.1'
#: (socket kind, port) of every port :func:`free_port` returned in this process.
_handed_out: set[tuple[int, int]] = set()
_handed_out_lock = threading.Lock()
_PROBES = 64


class ServerError(RuntimeError):
    """A server did not start (or stop) as expected; the message ends with its log."""


def free_port(host: str = _HOST, kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on ``host`` right now (the OS picks it), for TCP or, with
    ``kind=socket.SOCK_DGRAM``, UDP; never one this process was given before.

    The probe socket is closed before the server binds, and the OS may then offer the
    same port to the next probe: servers picked one after another before any of them
    binds (Jaeger's sixteen listeners, the demo's two services) would then collide.
    Remembering what was handed out rules that out; the remembered set is bounded by
    the ephemeral range and stays small (one entry per server port).
    """
    with _handed_out_lock:
        for _ in range(_PROBES):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if (kind, port) not in _handed_out:
                _handed_out.add((kind, port))
                return port
    raise OSError(f'no free port on {host} that this process was not given before')


def _control_socket_option() -> list[str]:
    try:
        gunicorn = importlib.import_module('gunicorn')  # untyped: no stubs needed
    except ImportError:  # the child will say so, with a clear message
        return []
    version = getattr(gunicorn, 'version_info', (0,))
    return ['--no-control-socket'] if tuple(version) >= (25, 1) else []



class ChildProcess:
    """A server run as a child process: its own session, its output in a temporary file,
    stopped with SIGTERM, a bounded wait, then SIGKILL of its process group.

    The base of :class:`GunicornProcess`; the tests' Jaeger and Zipkin servers use it too.
    A subclass says how it starts (``start()``, which calls :meth:`_spawn`).
    """

    #: A label for messages.
    name = 'server'

    def __init__(self) -> None:
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def pid(self) -> Optional[int]:
        """The child's pid, once started."""
        return self.process.pid if self.process is not None else None

    def start(self) -> Any:
        raise NotImplementedError

    def _spawn(self, command: list[str], *, env: Optional[Mapping[str, str]] = None,
               cwd: Optional[str] = None) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own session with its output in the log file."""
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True)
        return self.process

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM (graceful), wait up to ``timeout``, then SIGKILL the process group.

        Returns:
            The exit status (negative: killed by that signal), or None if never started.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except KeyboardInterrupt:
                self.kill()
                raise
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the child and its own children (its process group), and reap it."""
        process = self.process
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait(timeout=10.0)

    def log(self) -> str:
        """Everything the child wrote to its standard output and error so far."""
        stream = self._log
        if stream is None:
            return ''
        # NOTE: the child shares this file's offset (the same open file), so read
        # with pread, which leaves the offset alone; a seek would misplace its writes.
        fd = stream.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode('utf-8', 'replace')

    def close(self) -> None:
        """Stop the child and discard its log file."""
        try:
            self.stop()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise ServerError(f'{self.name} was not started')
        return self.process

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class GunicornProcess(ChildProcess):
    """One gunicorn master (and its workers) on ``127.0.0.1``.

    Args:
        app: the app argument, e.g. ``'pkg.module:app'`` or ``'pkg.module:create()'``.
        env: environment variables for the server (passed as ``--env NAME=VALUE``).
        options: more command-line options (``--workers``, ``--preload``, ...).
        port: the port to bind; a free one when omitted (see :attr:`url`).
        hooks: use ``-c python:falcon_tracing_wsgi.gunicorn`` (the tracing hooks).
        cwd: the directory to start in (gunicorn puts it on ``sys.path``).
        name: a label for messages.
    """

    def __init__(self, app: str, *, env: Optional[Mapping[str, str]] = None,
                 options: Iterable[str] = (), port: Optional[int] = None,
                 hooks: bool = True, cwd: Optional[str] = None,
                 name: Optional[str] = None) -> None:
        self.app = app
        self.env = dict(env or {})
        self.options = list(options)
        self.port = port if port is not None else free_port()
        self.hooks = hooks
        self.cwd = cwd
        super().__init__()
        self.name = name or app

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f'http://{_HOST}:{self.port}'

    def command(self) -> list[str]:
        """The argument list that starts the server."""
        args = [sys.executable, '-m', 'gunicorn', '--bind', f'{_HOST}:{self.port}']
        if self.hooks:
            args += ['-c', 'python:falcon_tracing_wsgi.gunicorn']
        for key, value in self.env.items():
            args += ['--env', f'{key}={value}']
        return args + _control_socket_option() + self.options + [self.app]

    def start(self) -> GunicornProcess:
        """Start the server (it is not ready yet: see :meth:`wait_ready`)."""
        if self.process is None:
            self._spawn(self.command(), cwd=self.cwd)
        return self

    def wait_ready(self, timeout: float) -> float:
        """Wait until the server accepts connections; return the seconds it took.

        Raises:
            ServerError: the server exited, or did not listen within ``timeout``.
        """
        process = self._running()
        started = _monotonic()
        deadline = started + timeout
        while True:
            try:
                with socket.create_connection((_HOST, self.port), timeout=0.5):
                    return _monotonic() - started
            except OSError:
                pass
            if _monotonic() >= deadline:
                raise ServerError(f'{self.name} did not listen on {self.url} within '
                                  f'{timeout:g} s\n{self.log()}')
            try:
                # The pause between attempts: returns at once if the server died.
                code = process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise ServerError(f'{self.name} exited with status {code} before it was '
                              f'ready\n{self.log()}')

    def booted_workers(self) -> Optional[list[int]]:
        """Pids of the workers that have installed their signal handlers (None: unknown).

        A booted gunicorn worker resets SIGHUP to its default action, which the master
        catches; ``/proc`` shows both, so this works on Linux only.
        """
        master = self.pid
        if master is None or not os.path.isdir('/proc'):
            return None
        booted = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/stat') as stat:
                    # the command name is in parentheses and may contain anything
                    parent = int(stat.read().rpartition(')')[2].split()[1])
                if parent != master:
                    continue
                with open(f'/proc/{entry}/status') as status:
                    caught = next(int(line.split()[1], 16) for line in status
                                  if line.startswith('SigCgt:'))
            except (OSError, ValueError, IndexError, StopIteration):
                continue  # gone meanwhile, or not readable
            if not caught & (1 << (signal.SIGHUP - 1)):
                booted.append(int(entry))
        return booted

    def wait_workers(self, count: int, timeout: float) -> float:
        """Wait until ``count`` workers have booted; return the seconds it took.

        Does nothing where that cannot be known (no ``/proc``).

        Raises:
            ServerError: the server exited, or fewer workers booted within ``timeout``.
        """
        process = self._running()
        started = _monotonic()
        deadline = started + timeout
        while True:
            booted = self.booted_workers()
            if booted is None or len(booted) >= count:
                return _monotonic() - started
            if _monotonic() >= deadline:
                raise ServerError(f'{self.name}: {len(booted)} of {count} workers booted '
                                  f'within {timeout:g} s\n{self.log()}')
            try:
                code = process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue
            raise ServerError(f'{self.name} exited with status {code}\n{self.log()}')

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the master (SIGHUP reloads, SIGTTIN adds a worker, ...)."""
        self._running().send_signal(signum)

    def __repr__(self) -> str:
        return f'<GunicornProcess {self.name} {self.url} pid={self.pid}>'
