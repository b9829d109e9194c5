"""A small HTTP load generator, used by the benchmarks when ``wrk`` is not installed.

``python benchmarks/loadgen.py --port P --path /hello --connections 32 --duration 10
--procs 2`` keeps ``connections`` requests in flight (split over ``procs`` processes, like
``wrk -t2 -c32``) and prints one JSON line: ``requests`` (complete responses),
``errors``, ``rps``, ``avg_ms``, ``p50_ms``, ``p99_ms``. Non-blocking sockets and one
``selectors`` loop per process: no threads.

Connections are kept alive as wrk keeps them: a response is complete when its
``Content-Length`` bytes arrived, and the next request goes on the same connection
unless the server said ``Connection: close`` (gunicorn's sync workers do, after every
response, so connect/accept costs are in every request, as with wrk; a gthread worker
keeps the connection, and waiting for it to close would stall each connection for its
keep-alive timeout).
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import subprocess
import sys
import time
from typing import Any, Optional


def _complete(data: bytes, closed: bool) -> Optional[tuple[bool, bool]]:
    """``(ok, keep_alive)`` once ``data`` holds a whole response, else None.

    ``closed``: the server closed the connection, which ends a response that has no
    ``Content-Length``.
    """
    head_end = data.find(b'\r\n\r\n')
    if head_end < 0:
        return None
    head = data[:head_end].lower()
    length = -1
    keep_alive = True
    for line in head.split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        if name == b'content-length':
            length = int(value)
        elif name == b'connection' and b'close' in value:
            keep_alive = False
    if length < 0:
        return (data.startswith(b'HTTP/1.1 200'), False) if closed else None
    if len(data) - head_end - 4 < length:
        return None
    return data.startswith(b'HTTP/1.1 200'), keep_alive


def _worker(port: int, path: str, connections: int, duration: float) -> dict[str, Any]:
    request = (f'GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n'
               f'User-Agent: loadgen\r\n\r\n').encode()
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + duration

    def connect() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(('127.0.0.1', port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, 'connect failed')
        # state: [request start, bytes received so far]
        selector.register(sock, selectors.EVENT_WRITE, [time.perf_counter(), b''])

    def finish(sock: socket.socket) -> None:
        selector.unregister(sock)
        sock.close()
        if time.perf_counter() < end:
            connect()

    for _ in range(connections):
        connect()
    while selector.get_map():
        for key, events in selector.select(1.0):
            sock = key.fileobj
            state = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    sock.send(request)
                    selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                data = sock.recv(65536)
            except OSError:
                errors += 1
                finish(sock)
                continue
            state[1] += data
            done = _complete(state[1], not data)
            if done is None:
                if not data:  # closed before a whole response arrived
                    errors += 1
                    finish(sock)
                continue
            ok, keep_alive = done
            if ok:
                latencies.append(time.perf_counter() - state[0])
            else:
                errors += 1
            if keep_alive and time.perf_counter() < end:
                state[0], state[1] = time.perf_counter(), b''
                selector.modify(sock, selectors.EVENT_WRITE, state)
            else:
                finish(sock)
    return {'latencies': latencies, 'errors': errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--path', default='/hello')
    parser.add_argument('--connections', type=int, default=32)
    parser.add_argument('--duration', type=float, default=10.0)
    parser.add_argument('--procs', type=int, default=2)
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = _worker(args.port, args.path, args.connections, args.duration)
        json.dump(result, sys.stdout)
        return
    per = [args.connections // args.procs + (i < args.connections % args.procs)
           for i in range(args.procs)]
    started = time.perf_counter()
    children = [subprocess.Popen(
        [sys.executable, __file__, '--child', '--port', str(args.port), '--path', args.path,
         '--connections', str(n), '--duration', str(args.duration)],
        stdout=subprocess.PIPE) for n in per if n]
    latencies: list[float] = []
    errors = 0
    for child in children:
        out, _ = child.communicate()
        result = json.loads(out)
        latencies += result['latencies']
        errors += result['errors']
    elapsed = time.perf_counter() - started
    latencies.sort()
    count = len(latencies)
    print(json.dumps({
        'requests': count, 'errors': errors, 'rps': count / args.duration, 'elapsed_s': elapsed,
        'avg_ms': sum(latencies) / count * 1000 if count else 0.0,
        'p50_ms': latencies[count // 2] * 1000 if count else 0.0,
        'p99_ms': latencies[int(count * 0.99)] * 1000 if count else 0.0}))


if __name__ == '__main__':
    main()
