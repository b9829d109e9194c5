"""Fake finished spans for the export tests: what reporters and encoders read."""

from __future__ import annotations

from typing import Any, Optional

from falcon_tracing_wsgi.tracer.context import SpanContext

#: 2023-11-14T22:13:20Z, a fixed start time so encodings are reproducible.
T0 = 1_700_000_000.0
TRACE_ID = '4e441824ec2b6a44ffdc9bb9a6453df3'
PARENT_ID = '6b221d5bc9e6496c'


class FakeSpan:
    """A finished span that satisfies the Span contract (what reporters read)."""

    __slots__ = ('context', 'operation_name', 'start_time', 'duration', 'tags', 'logs',
                 'references')

    def __init__(self, context: Optional[SpanContext] = None, operation_name: str = 'GET /',
                 start_time: float = T0, duration: float = 0.0015,
                 tags: Optional[dict[str, Any]] = None,
                 logs: Optional[list[tuple[float, dict[str, Any]]]] = None,
                 references: Optional[tuple[Any, ...]] = None) -> None:
        self.context = context or SpanContext(TRACE_ID, '352bff9a74ca9ad2', PARENT_ID, True)
        self.operation_name = operation_name
        self.start_time = start_time
        self.duration = duration
        self.tags = {} if tags is None else tags
        self.logs = logs
        self.references = references


def make_span(index: int = 0, **kwargs: Any) -> FakeSpan:
    """A span with a unique span id per ``index`` (ids are 1-based, never zero)."""
    context = SpanContext(kwargs.pop('trace_id', TRACE_ID), f'{index + 1:016x}',
                          kwargs.pop('parent_id', PARENT_ID), True,
                          debug=kwargs.pop('debug', False))
    kwargs.setdefault('tags', {'span.kind': 'server', 'http.method': 'GET'})
    return FakeSpan(context, **kwargs)
