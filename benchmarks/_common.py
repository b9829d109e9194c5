"""Helpers shared by the benchmarks: the sink process, tables, machine facts."""

from __future__ import annotations

import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable


class Sink:
    """The counting collector (``sink.py``) in its own process; a context manager."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([PYTHON, str(HERE / 'sink.py')], stdout=subprocess.PIPE,
                                        text=True)
        line = self.process.stdout.readline() if self.process.stdout else ''
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f'the sink did not start (said {line!r})')
        self.port = int(line)
        self.url = f'http://127.0.0.1:{self.port}/api/v2/spans'
        self.otlp_url = f'http://127.0.0.1:{self.port}/v1/traces'

    def counts(self) -> dict[str, int]:
        """``{"spans": N, "posts": N, "bytes": N}`` received so far."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        try:
            conn.request('GET', '/count')
            return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
        finally:
            conn.close()

    def wait_for(self, spans: int, timeout: float) -> dict[str, int]:
        """Poll until at least ``spans`` arrived or ``timeout`` passed; return the counts."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if counts['spans'] >= spans or time.monotonic() > deadline:
                return counts
            time.sleep(0.05)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float('nan')


def machine() -> str:
    """One line: CPU model, cores, memory, kernel, Python, key package versions."""
    model = 'unknown CPU'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    memory = ''
    try:
        kb = int(Path('/proc/meminfo').read_text().split()[1])
        memory = f', {kb / 1024 / 1024:.0f} GiB RAM'
    except (OSError, ValueError, IndexError):
        pass
    return (f'{os.cpu_count()} x {model}{memory}, Linux {platform.release()}, '
            f'{platform.python_implementation()} {platform.python_version()}; '
            + ', '.join(f'{name} {version}' for name, version in versions().items()))


def versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for name in ('falcon', 'opentracing', 'gunicorn', 'opentelemetry-sdk',
                 'opentelemetry-instrumentation-wsgi', 'opentelemetry-exporter-zipkin-json'):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = 'not installed'
    return out


def otel_available() -> bool:
    try:
        import opentelemetry.exporter.zipkin.json  # noqa: F401
        import opentelemetry.instrumentation.wsgi  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def otel_otlp_available() -> bool:
    """Whether OpenTelemetry's OTLP/HTTP exporter is installed (``otel_otlp``)."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        return False
    return otel_available()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          align: Optional[str] = None) -> str:
    """A plain-text table (``align``: one of ``l``/``r`` per column; default: first left)."""
    if align is None:
        align = 'l' + 'r' * (len(headers) - 1)
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return '  '.join(c.ljust(w) if a == 'l' else c.rjust(w)
                         for c, w, a in zip(row, widths, align)).rstrip()
    rule = '  '.join('-' * w for w in widths)
    return '\n'.join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return '-'
        return f'{value:,.1f}' if abs(value) < 1000 else f'{value:,.0f}'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'{value:,}'
    return '-' if value is None else str(value)


def verdict(ok: bool) -> str:
    return 'holds' if ok else 'MISSED'
