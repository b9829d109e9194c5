"""Zipkin v2 tools: a strict schema check and a small receiver, for tests and demos.

The Zipkin *export* lives in the format-agnostic pipeline (:mod:`falcon_tracing_wsgi.export`:
``export.zipkin`` encodes, ``export.http`` sends); its public names are re-exported here
for code written against this package's first layout.

* :func:`validate_span` / :func:`validate_spans` (``schema``) and :class:`ZipkinCollector`
  (``collector``): a strict Zipkin v2 check and a small receiver.

Importing this package starts no thread and does no I/O. :class:`ZipkinCollector` and
the schema check are imported on first use: a service that only reports spans never
loads them (nor :mod:`http.server`), which keeps each worker's memory down.
"""

from __future__ import annotations

from typing import Any

from .._types import SendError
from ..export.file import FileSender
from ..export.http import HttpSender
from ..export.pipeline import BatchReporter, NoopReporter
from ..export.zipkin import DEFAULT_MAX_VALUE_LENGTH, Endpoint, JsonV2Encoder

__all__ = ['BatchReporter', 'NoopReporter', 'HttpSender', 'FileSender', 'SendError',
           'JsonV2Encoder', 'Endpoint', 'DEFAULT_MAX_VALUE_LENGTH', 'ZipkinCollector',
           'validate_span', 'validate_spans']


def __getattr__(name: str) -> Any:
    # PERF: test and demo tools, imported on first use (see the module docstring).
    if name == 'ZipkinCollector':
        from .collector import ZipkinCollector
        return ZipkinCollector
    if name in ('validate_span', 'validate_spans'):
        from . import schema
        return getattr(schema, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
