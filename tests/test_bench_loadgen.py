"""The benchmarks' Python load generator (``benchmarks/loadgen.py``), run as CI runs it.

It stands in for wrk when wrk is not installed (CI's benchmark smoke run), so it must
finish responses the way wrk does: by ``Content-Length`` on a kept-alive connection (a
gunicorn ``gthread`` worker keeps it open; waiting for the close stalled every
connection for the keep-alive timeout), by the close otherwise.
"""

from __future__ import annotations

import json
import pathlib
import socketserver
import subprocess
import sys
import threading

import pytest

LOADGEN = pathlib.Path(__file__).resolve().parent.parent / 'benchmarks' / 'loadgen.py'
BODY = b'{"message": "hello"}'


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        super().__init__(('127.0.0.1', 0), _Handler)
        self.mode = mode
        self.connections = 0
        self.lock = threading.Lock()


class _Handler(socketserver.StreamRequestHandler):
    """Answers every request on the connection; closes after one unless kept alive."""

    server: _Server

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        mode = self.server.mode
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            while self.rfile.readline(65536) not in (b'\r\n', b'\n', b''):
                pass
            if mode == 'keep-alive':
                head = b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(BODY)
            elif mode == 'close':
                head = (b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n'
                        % len(BODY))
            else:  # no length: the close ends the body
                head = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'
            self.wfile.write(head + BODY)
            self.wfile.flush()
            if mode != 'keep-alive':
                return


@pytest.mark.parametrize('mode', ['keep-alive', 'close', 'no-length'])
def test_loadgen_completes_responses_like_wrk(mode: str) -> None:
    server = _Server(mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = subprocess.run(
            [sys.executable, str(LOADGEN), '--port', str(server.server_address[1]),
             '--connections', '4', '--procs', '1', '--duration', '0.3'],
            capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['errors'] == 0
    assert result['requests'] > 4
    if mode == 'keep-alive':
        assert server.connections == 4  # every request went on the first four connections
    else:
        assert server.connections >= result['requests']
