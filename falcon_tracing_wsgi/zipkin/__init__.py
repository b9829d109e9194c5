"""Zipkin v2 reporting: encode finished spans as JSON, batch them, send them.

The pieces, each replaceable (``bootstrap.py`` wires them together):

* :class:`JsonV2Encoder` and :class:`Endpoint` (``encoding``): a finished span to the
  text of one Zipkin v2 JSON object; pure, no I/O.
* :class:`HttpSender` and :class:`FileSender` (``sender``): a batch to a collector's
  ``POST /api/v2/spans`` (JSON array) or to a stream as JSON lines.
* :class:`BatchReporter` and :class:`NoopReporter` (``reporter``): the Reporter the tracer
  talks to; a bounded queue and a lazily started, fork-safe worker thread.
* :func:`validate_span` / :func:`validate_spans` (``schema``) and :class:`ZipkinCollector`
  (``collector``): a strict Zipkin v2 check and a small receiver, for tests and demos.

Importing this package starts no thread and does no I/O. :class:`ZipkinCollector` and
the schema check are imported on first use: a service that only reports spans never
loads them (nor :mod:`http.server`), which keeps each worker's memory down.
"""

from __future__ import annotations

from typing import Any

from .._types import SendError
from .encoding import DEFAULT_MAX_VALUE_LENGTH, Endpoint, JsonV2Encoder
from .reporter import BatchReporter, NoopReporter
from .sender import FileSender, HttpSender

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
