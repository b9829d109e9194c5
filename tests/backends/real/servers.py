"""Real Jaeger v2 and Zipkin servers for the tests: fetched once, cached by version, run here.

The package promises traces that users view in Zipkin and Jaeger, so the tests in this
folder send spans to the real servers and read them back through each server's own query
API. This module gets those servers and runs them::

    python -m tests.backends.real.servers fetch          # build Jaeger, fetch Zipkin (cached)
    python -m tests.backends.real.servers run zipkin     # start one, print its URLs, Ctrl-C

and the pytest fixtures use :class:`JaegerServer` and :class:`ZipkinServer`::

    with JaegerServer(jaeger_binary()) as jaeger:
        jaeger.zipkin_url       # Jaeger's Zipkin receiver (POST /api/v2/spans)
        jaeger.otlp_http_url    # Jaeger's OTLP/HTTP receiver (POST /v1/traces)
        jaeger.query_url        # GET /api/traces/{id}, /api/v3/traces/{id}, the UI

Decisions:

* **Jaeger v2 is built from source with the Go toolchain**, the way the Go module proxy
  serves it: ``go install ...@v1.75.0`` is refused (the module has a ``replace``
  directive), so a throwaway module records ``go get -tool`` and ``go build`` builds
  ``cmd/jaeger``. Module v1.75.0 is the commit tagged v2.12.0 (1c5531b15d6a); the build
  stamps that version, so ``jaeger version`` and the server's log say which it is.
* **Zipkin is the official ``exec`` jar** from Maven Central, fetched with Maven.
* **The cache is outside the checkout, keyed by version** (``TRACING_BACKENDS_CACHE``,
  default ``~/.cache/falcon-tracing-wsgi/backends``): the first Jaeger build takes minutes
  and hundreds of MB of modules; later runs start the cached binary in well under a second.
  A result is written under a temporary name and renamed, under a file lock, so an
  interrupted or concurrent fetch never leaves half a binary behind.
* **Every listener on 127.0.0.1 and a free port.** Jaeger without ``--config`` runs its
  embedded all-in-one configuration (memory storage, the OTLP, Jaeger and Zipkin receivers,
  the query service, health check, sampling, expvar, zpages, Prometheus metrics); each of
  its sixteen endpoints is moved with ``--set`` (``JAEGER_LISTEN_HOST`` moves only some,
  and the query service listens on all interfaces by default). Zipkin's one HTTP port is
  Armeria's, bound to 127.0.0.1 with ``--armeria.ports[0].*``. No two ports this process
  picks are the same (see ``free_port``); a server whose port another process took in
  the meantime says "address already in use", and is started again on new ports (at most
  three tries).
* **Bounded and always stopped**: health is polled with a deadline, pausing by waiting on
  the process so a server that dies at boot is reported at once with its log; stopping is
  SIGTERM, a bounded wait, then SIGKILL of the process group. Output goes to a temporary
  file (never a pipe that could fill up), shown in every error; the process handling is
  the demo's :class:`~falcon_tracing_wsgi.demo.processes.ChildProcess`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from time import monotonic
from typing import IO, Any, Optional

from falcon_tracing_wsgi.demo.processes import ChildProcess, free_port

__all__ = ['BackendUnavailable', 'BackendError', 'JaegerServer', 'ZipkinServer',
           'cache_dir', 'jaeger_binary', 'zipkin_jar', 'JAEGER_VERSION', 'ZIPKIN_VERSION']

#: The Go module version that is built, and the Jaeger release it is (the same commit).
JAEGER_MODULE = 'github.com/jaegertracing/jaeger'
JAEGER_MODULE_VERSION = 'v1.75.0'
JAEGER_VERSION = 'v2.12.0'
_JAEGER_COMMIT = '1c5531b15d6a90c91a5a6cec94171ccc18ebd3ca'
#: Maven Central coordinates of Zipkin's runnable jar (Java 17+).
ZIPKIN_VERSION = '3.6.1'
ZIPKIN_ARTIFACT = f'io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec'
_MAVEN_DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1'
#: The Go that builds Jaeger where the installed one predates toolchain switching.
_TOOLCHAIN = 'go1.25.3'

CACHE_ENV = 'TRACING_BACKENDS_CACHE'
_HOST = '127.0.0.1'
#: Starts tried when a listener's port was taken between its choice and the bind.
_BIND_ATTEMPTS = 3
_IN_USE = 'address already in use'  # Go's and Java's words (lower-cased) for EADDRINUSE
_BUILD_TIMEOUT = 40 * 60.0
_FETCH_TIMEOUT = 15 * 60.0


class BackendUnavailable(RuntimeError):
    """A backend cannot be had here (no Go or Java toolchain, or not cached and not fetched)."""


class BackendError(RuntimeError):
    """A backend failed to build, fetch, start or stop; the message ends with its output."""


def cache_dir() -> pathlib.Path:
    """Where built binaries and fetched jars are kept, one folder per version."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / '.cache' / 'falcon-tracing-wsgi' / 'backends'


def _tool(name: str, fallbacks: Sequence[str] = ()) -> str:
    found = shutil.which(name) or next((p for p in fallbacks if os.access(p, os.X_OK)), None)
    if found is None:
        raise BackendUnavailable(f'{name!r} is not installed (needed to get the backend)')
    return found


@contextlib.contextmanager
def _locked(directory: pathlib.Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (two fetches at once build once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(args: Sequence[str], *, cwd: pathlib.Path, timeout: float, log: IO[str],
         env: Optional[Mapping[str, str]] = None) -> None:
    log.write(f'$ {" ".join(args)}\n')
    log.flush()
    try:
        completed = subprocess.run(list(args), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, timeout=timeout,
                                   env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f'{args[0]} did not finish within {timeout:g} s') from exc
    if completed.returncode != 0:
        raise BackendError(f'{" ".join(args)} exited with status {completed.returncode}')


def _produce(target: pathlib.Path, what: str, make: Any, echo: bool) -> pathlib.Path:
    """``target`` if cached, else ``make(tmp, log)`` then an atomic rename to ``target``."""
    if target.exists():
        return target
    with _locked(target.parent):
        if target.exists():  # made by another process while this one waited
            return target
        log_path = target.parent / f'{target.name}.log'
        started = monotonic()
        with open(log_path, 'w') as log:
            if echo:
                print(f'{what}: log in {log_path}', file=sys.stderr, flush=True)
            partial = target.with_name(target.name + '.partial')
            try:
                make(partial, log)
                os.replace(partial, target)
            except BackendError as exc:
                log.flush()
                raise BackendError(f'{what} failed: {exc}\n{_tail(log_path)}') from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
        if echo:
            print(f'{what}: done in {monotonic() - started:.0f} s -> {target}', file=sys.stderr,
                  flush=True)
    return target


def jaeger_binary(*, fetch: bool = True, echo: bool = False) -> pathlib.Path:
    """The cached Jaeger v2 binary, built with the Go toolchain if missing and ``fetch``.

    Raises:
        BackendUnavailable: not cached, and ``fetch`` is false or there is no ``go``.
        BackendError: the build failed (the message ends with its log).
    """
    target = cache_dir() / f'jaeger-{JAEGER_MODULE_VERSION}' / 'jaeger'
    if target.exists() or not fetch:
        if not target.exists():
            raise BackendUnavailable(f'Jaeger is not built yet ({target} is missing)')
        return target
    found = _tool('go', ['/usr/local/go/bin/go'])

    def build(output: pathlib.Path, log: IO[str]) -> None:
        go = _recent_go(found, log)
        module = output.parent / 'build'
        module.mkdir(exist_ok=True)
        if not (module / 'go.mod').exists():
            _run([go, 'mod', 'init', 'falcon-tracing-wsgi/jaeger-build'], cwd=module,
                 timeout=60, log=log)
        _run([go, 'get', '-tool', f'{JAEGER_MODULE}/cmd/jaeger@{JAEGER_MODULE_VERSION}'],
             cwd=module, timeout=_BUILD_TIMEOUT, log=log)
        version = f'{JAEGER_MODULE}/internal/version'
        ldflags = (f'-X {version}.latestVersion={JAEGER_VERSION} '
                   f'-X {version}.commitSHA={_JAEGER_COMMIT}')
        _run([go, 'build', '-trimpath', '-ldflags', ldflags, '-o', str(output),
              f'{JAEGER_MODULE}/cmd/jaeger'], cwd=module, timeout=_BUILD_TIMEOUT, log=log)

    return _produce(target, f'building Jaeger {JAEGER_VERSION} ({JAEGER_MODULE}@'
                    f'{JAEGER_MODULE_VERSION})', build, echo)


def _go_version(go: str) -> tuple[int, ...]:
    try:
        text = subprocess.run([go, 'env', 'GOVERSION'], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendError(f'{go} env GOVERSION failed: {exc}') from exc
    match = re.match(r'go(\d+)\.(\d+)', text)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def _recent_go(go: str, log: IO[str]) -> str:
    """``go``, or a newer toolchain fetched with it when it cannot build Jaeger.

    Go 1.21+ switches to the toolchain a module asks for by itself (GOTOOLCHAIN). An
    older Go (Debian 12's is 1.19) cannot, so this does what that switch does: it
    downloads the toolchain module ``golang.org/toolchain`` from the module proxy and
    marks its programs executable (module zips keep no file modes).
    """
    if _go_version(go) >= (1, 21):
        return go
    machine = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(os.uname().machine, 'amd64')
    module = f'golang.org/toolchain@v0.0.1-{_TOOLCHAIN}.linux-{machine}'
    target = cache_dir() / _TOOLCHAIN
    if not (target / 'bin' / 'go').exists():
        log.write(f'$ {go} mod download -json {module}\n')
        log.flush()
        with tempfile.TemporaryDirectory() as scratch:
            try:
                download = subprocess.run(
                    [go, 'mod', 'download', '-json', module], cwd=scratch, text=True,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                    timeout=_BUILD_TIMEOUT, env={**os.environ, 'GOFLAGS': '', 'GO111MODULE': 'on'})
                source = json.loads(download.stdout)['Dir']
            except (subprocess.SubprocessError, ValueError, KeyError) as exc:
                raise BackendError(f'could not download {module}: {exc}') from exc
            partial = target.with_name(target.name + '.partial')
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(source, partial)
            for program in [*partial.glob('bin/*'), *partial.glob('pkg/tool/*/*')]:
                program.chmod(0o755)
            os.replace(partial, target)
        log.write(f'{go} is older than Go 1.21: using {module}\n')
    return str(target / 'bin' / 'go')


def zipkin_jar(*, fetch: bool = True, echo: bool = False) -> pathlib.Path:
    """The cached Zipkin server jar, fetched from Maven Central with Maven if missing.

    Raises:
        BackendUnavailable: not cached, and ``fetch`` is false or there is no ``mvn``.
        BackendError: the fetch failed (the message ends with Maven's output).
    """
    target = cache_dir() / f'zipkin-{ZIPKIN_VERSION}' / 'zipkin.jar'
    if target.exists() or not fetch:
        if not target.exists():
            raise BackendUnavailable(f'Zipkin is not fetched yet ({target} is missing)')
        return target
    mvn = _tool('mvn')

    def download(output: pathlib.Path, log: IO[str]) -> None:
        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            _run([mvn, '--batch-mode', '--no-transfer-progress',
                  f'{_MAVEN_DEPENDENCY_PLUGIN}:copy', f'-Dartifact={ZIPKIN_ARTIFACT}',
                  f'-DoutputDirectory={scratch}'], cwd=pathlib.Path(scratch),
                 timeout=_FETCH_TIMEOUT, log=log)
            jars = list(pathlib.Path(scratch).glob('zipkin-server-*-exec.jar'))
            if len(jars) != 1:
                raise BackendError(f'expected one jar from Maven, found {jars}')
            os.replace(jars[0], output)

    return _produce(target, f'fetching Zipkin {ZIPKIN_VERSION} ({ZIPKIN_ARTIFACT})',
                    download, echo)


def _tail(path: pathlib.Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors='replace')
    except OSError:
        return ''
    return text if len(text) <= limit else '...\n' + text[-limit:]


class _ServerProcess(ChildProcess):
    """A backend server child process: bounded start (health polled), stop and log from
    :class:`~falcon_tracing_wsgi.demo.processes.ChildProcess`."""

    name = 'server'

    def __init__(self) -> None:
        super().__init__()
        self.started_in: Optional[float] = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def health_url(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 120.0) -> _ServerProcess:
        """Start the server and wait until its health check passes (``timeout`` seconds).

        Raises:
            BackendError: it exited, or was not healthy in time (the server is stopped).
        """
        if self.process is not None:
            return self
        started = monotonic()
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            self._spawn(self.command(), env=self.environment())
            try:
                self._wait_healthy(started + timeout)
            except BackendError as exc:
                self.close()
                # A free port is only free when it is picked: another process may bind
                # it (a client's ephemeral port) before the server does. New ports then.
                if attempt == _BIND_ATTEMPTS or _IN_USE not in str(exc).lower():
                    raise
                self.process = None
                self.choose_ports()
                continue
            except BaseException:
                self.close()
                raise
            break
        self.started_in = monotonic() - started
        return self

    def choose_ports(self) -> None:
        """Pick a free port for every listener (again, after a port was taken)."""
        raise NotImplementedError

    def _wait_healthy(self, deadline: float) -> None:
        process = self._running()
        last = ''
        while True:
            try:
                with urllib.request.urlopen(self.health_url, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.HTTPError) as exc:
                last = str(exc)
            if monotonic() >= deadline:
                raise BackendError(f'{self.name} was not healthy at {self.health_url} in '
                                   f'time (last: {last})\n{self.log()}')
            try:
                code = process.wait(timeout=0.1)  # the pause; returns at once if it died
            except subprocess.TimeoutExpired:
                continue
            raise BackendError(f'{self.name} exited with status {code} before it was '
                               f'healthy\n{self.log()}')

    def get_json(self, url: str, timeout: float = 5.0) -> Any:
        """GET ``url`` and decode its JSON body; None on 404 (not there yet)."""
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


class JaegerServer(_ServerProcess):
    """Jaeger v2 all-in-one (memory storage) with every endpoint on a free 127.0.0.1 port."""

    name = f'Jaeger {JAEGER_VERSION}'
    #: ``--set`` key of every TCP endpoint of the embedded all-in-one configuration.
    TCP_ENDPOINTS = (
        'receivers.otlp.protocols.grpc.endpoint',
        'receivers.otlp.protocols.http.endpoint',
        'receivers.zipkin.endpoint',
        'receivers.jaeger.protocols.grpc.endpoint',
        'receivers.jaeger.protocols.thrift_http.endpoint',
        'extensions.jaeger_query.http.endpoint',
        'extensions.jaeger_query.grpc.endpoint',
        'extensions.remote_sampling.http.endpoint',
        'extensions.remote_sampling.grpc.endpoint',
        'extensions.healthcheckv2.http.endpoint',
        'extensions.healthcheckv2.grpc.endpoint',
        'extensions.expvar.endpoint',
        'extensions.zpages.endpoint',
    )
    UDP_ENDPOINTS = (
        'receivers.jaeger.protocols.thrift_binary.endpoint',
        'receivers.jaeger.protocols.thrift_compact.endpoint',
    )

    def __init__(self, binary: pathlib.Path) -> None:
        super().__init__()
        self.binary = binary
        self.choose_ports()

    def choose_ports(self) -> None:
        self.ports = {key: free_port() for key in self.TCP_ENDPOINTS}
        self.ports.update({key: free_port(kind=socket.SOCK_DGRAM) for key in self.UDP_ENDPOINTS})
        self.metrics_port = free_port()

    def command(self) -> list[str]:
        sets = [f'--set={key}={_HOST}:{port}' for key, port in self.ports.items()]
        # The Prometheus reader is a list item, which --set can only replace whole.
        reader = ('[{pull: {exporter: {prometheus: {host: "%s", port: %d}}}}]'
                  % (_HOST, self.metrics_port))
        sets.append(f'--set=service.telemetry.metrics.readers={reader}')
        return [str(self.binary), *sets]

    def environment(self) -> dict[str, str]:
        # Anything the config leaves at its default still listens on loopback only.
        return {**os.environ, 'JAEGER_LISTEN_HOST': _HOST}

    def _url(self, key: str) -> str:
        return f'http://{_HOST}:{self.ports[key]}'

    @property
    def health_url(self) -> str:
        return self._url('extensions.healthcheckv2.http.endpoint') + '/status'

    @property
    def query_url(self) -> str:
        """The query service and UI (16686 by default)."""
        return self._url('extensions.jaeger_query.http.endpoint')

    @property
    def zipkin_url(self) -> str:
        """Jaeger's Zipkin receiver, Zipkin v2 JSON (9411 by default)."""
        return self._url('receivers.zipkin.endpoint') + '/api/v2/spans'

    @property
    def otlp_http_url(self) -> str:
        """Jaeger's OTLP/HTTP traces endpoint (4318 by default)."""
        return self._url('receivers.otlp.protocols.http.endpoint') + '/v1/traces'

    @property
    def otlp_grpc_endpoint(self) -> str:
        """Jaeger's OTLP/gRPC receiver, host:port (4317 by default)."""
        return f'{_HOST}:{self.ports["receivers.otlp.protocols.grpc.endpoint"]}'

    def trace(self, trace_id: str) -> Any:
        """``GET /api/traces/{id}`` (the UI's API): ``{"data": [trace]}``, None if unknown."""
        return self.get_json(f'{self.query_url}/api/traces/{trace_id}')

    def trace_v3(self, trace_id: str) -> Any:
        """``GET /api/v3/traces/{id}``: OTLP JSON under ``result``, None if unknown."""
        return self.get_json(f'{self.query_url}/api/v3/traces/{trace_id}')


class ZipkinServer(_ServerProcess):
    """Zipkin server (in-memory storage) on a free 127.0.0.1 port."""

    name = f'Zipkin {ZIPKIN_VERSION}'

    def __init__(self, jar: pathlib.Path, java: Optional[str] = None) -> None:
        super().__init__()
        self.jar = jar
        self.java = java or _tool('java')
        self.choose_ports()

    def choose_ports(self) -> None:
        self.port = free_port()

    def command(self) -> list[str]:
        # PERF: the client compiler only and the serial collector start Zipkin 2-3 times
        # faster on 2 busy cores (9 s instead of 19-25 s); a test's few hundred spans
        # never need the optimising compiler. One Armeria port replaces the default
        # (all interfaces, 9411) as a whole list item.
        return [self.java, '-Xms64m', '-Xmx512m', '-XX:TieredStopAtLevel=1',
                '-XX:+UseSerialGC', '-jar', str(self.jar),
                f'--armeria.ports[0].port={self.port}', f'--armeria.ports[0].ip={_HOST}',
                '--armeria.ports[0].protocols[0]=http']

    def environment(self) -> dict[str, str]:
        # In-memory storage whatever the caller's shell says; no self-tracing.
        return {**os.environ, 'STORAGE_TYPE': 'mem', 'SELF_TRACING_ENABLED': 'false'}

    @property
    def url(self) -> str:
        """The API and the web UI (``/zipkin/``)."""
        return f'http://{_HOST}:{self.port}'

    @property
    def health_url(self) -> str:
        return self.url + '/health'

    @property
    def spans_url(self) -> str:
        """Where spans are posted: Zipkin v2 JSON."""
        return self.url + '/api/v2/spans'

    def trace(self, trace_id: str) -> Any:
        """``GET /api/v2/trace/{id}``: the list of spans, None if unknown."""
        return self.get_json(f'{self.url}/api/v2/trace/{trace_id}')


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m tests.backends.real.servers',
        description=f'Get (cached in {cache_dir()}) and run Jaeger {JAEGER_VERSION} and '
                    f'Zipkin {ZIPKIN_VERSION} on 127.0.0.1.')
    commands = parser.add_subparsers(dest='command', required=True)
    fetch = commands.add_parser('fetch', help='build/fetch the servers into the cache')
    fetch.add_argument('names', nargs='*', metavar='jaeger|zipkin', help='default: both')
    run = commands.add_parser('run', help='start one, print its URLs, stop on Ctrl-C')
    run.add_argument('name', choices=['jaeger', 'zipkin'])
    args = parser.parse_args(argv)
    if args.command == 'fetch' and not set(args.names) <= {'jaeger', 'zipkin'}:
        parser.error(f'fetch: unknown backend in {args.names} (jaeger, zipkin)')
    if args.command == 'fetch':
        try:
            for name in args.names or ['jaeger', 'zipkin']:
                path = (jaeger_binary if name == 'jaeger' else zipkin_jar)(echo=True)
                print(f'{name}: {path}')
        except (BackendUnavailable, BackendError) as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 1
        return 0
    server: _ServerProcess
    try:
        if args.name == 'jaeger':
            server = JaegerServer(jaeger_binary(echo=True)).start()
        else:
            server = ZipkinServer(zipkin_jar(echo=True)).start()
    except (BackendUnavailable, BackendError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    with server:
        print(f'{server.name} healthy after {server.started_in:.1f} s')
        if isinstance(server, JaegerServer):
            print(f'  UI and query API  {server.query_url}\n'
                  f'  Zipkin receiver   {server.zipkin_url}\n'
                  f'  OTLP/HTTP         {server.otlp_http_url}\n'
                  f'  OTLP/gRPC         {server.otlp_grpc_endpoint}')
        elif isinstance(server, ZipkinServer):
            print(f'  UI and query API  {server.url}/zipkin/\n'
                  f'  spans             {server.spans_url}')
        print('Ctrl-C stops it.', flush=True)
        # Blocked, then waited for: Ctrl-C or a SIGTERM both end in the server's stop().
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == '__main__':
    sys.exit(_main())
