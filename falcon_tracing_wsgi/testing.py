"""Helpers for testing your own instrumentation against this library's tracer.

Use :func:`make_tracer` to get a tracer that samples everything and keeps finished spans
in memory, then assert on ``reporter.spans``::

    from falcon_tracing_wsgi.testing import make_tracer

    def test_checkout_is_traced():
        tracer, reporter = make_tracer()
        with tracer.start_active_span('checkout'):
            ...
        (span,) = reporter.spans
        assert span.operation_name == 'checkout'

Nothing here starts a thread or touches the network, so it is safe in any test runner.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Optional, Union

from ._sync import after_fork_in_child
from ._types import Sampler
from .propagation import build_propagator
from .tracer.sampler import ConstSampler
from .tracer.span import Span
from .tracer.tracer import Tracer

__all__ = ['InMemoryReporter', 'make_tracer']


class InMemoryReporter:
    """A reporter that keeps every finished span in a list (thread-safe).

    Example::

        reporter = InMemoryReporter()
        tracer = Tracer(reporter, ConstSampler(True), propagator)
        ...
        assert [s.operation_name for s in reporter.spans] == ['GET /users']
    """

    __slots__ = ('_lock', '_spans', '__weakref__')

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        after_fork_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the parent's may be held by a thread not copied

    def report(self, span: Span) -> None:
        """Keep ``span``."""
        with self._lock:
            self._spans.append(span)

    @property
    def spans(self) -> list[Span]:
        """A copy of the finished spans, in the order they finished."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        """Forget the spans kept so far."""
        with self._lock:
            self._spans.clear()

    def flush(self, timeout: float = 0.0) -> bool:
        """Nothing to send: always ``True``."""
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        """Nothing to stop: always ``True``."""
        return True

    def __repr__(self) -> str:
        return f'<InMemoryReporter spans={len(self._spans)}>'


def make_tracer(propagation: Union[Sequence[str], str] = ('b3', 'w3c'), *,
                sampler: Optional[Sampler] = None,
                **kwargs: Any) -> tuple[Tracer, InMemoryReporter]:
    """Return a tracer that samples every new trace and the reporter it reports to.

    Args:
        propagation: the propagation format names (a sequence, or one comma-separated
            string), as for :func:`falcon_tracing_wsgi.propagation.build_propagator`.
        sampler: replaces the default ``ConstSampler(True)``.
        **kwargs: passed on to :class:`~falcon_tracing_wsgi.tracer.tracer.Tracer`
            (``scope_manager``, ``trace_id_128bit``, ``trust_inbound_sampling``,
            ``id_generator``, ``span_limits``).

    Returns:
        ``(tracer, reporter)``.
    """
    reporter = InMemoryReporter()
    tracer = Tracer(reporter, ConstSampler(True) if sampler is None else sampler,
                    build_propagator(propagation), **kwargs)
    return tracer, reporter
