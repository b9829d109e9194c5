"""A small HTTP load generator, used by ``bench_e2e.py`` when ``wrk`` is not installed.

``python benchmarks/loadgen.py --port P --path /hello --connections 32 --duration 10
--procs 2`` keeps ``connections`` requests in flight (split over ``procs`` processes, like
``wrk -t2 -c32``), each on a new connection (gunicorn's sync workers close the connection
after every response, so wrk reconnects for each request too), and prints one JSON line:
``requests`` (complete responses), ``errors``, ``rps``, ``avg_ms``, ``p50_ms``,
``p99_ms``. Non-blocking sockets and one ``selectors`` loop per process: no threads.
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


def _worker(port: int, path: str, connections: int, duration: float) -> dict:
    request = (f'GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n'
               f'User-Agent: loadgen\r\n\r\n').encode()
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + duration

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(('127.0.0.1', port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, 'connect failed')
        selector.register(sock, selectors.EVENT_WRITE, [time.perf_counter(), b''])

    for _ in range(connections):
        start()
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
                data = None
            if data:
                state[1] += data
                continue
            selector.unregister(sock)
            sock.close()
            if data is None or not state[1].startswith(b'HTTP/1.1 200'):
                errors += 1
            else:
                latencies.append(time.perf_counter() - state[0])
            if time.perf_counter() < end:
                start()
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
