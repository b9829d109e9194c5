"""Shared assertions for the propagation tests: context validity and bounded work."""

from __future__ import annotations

import gc
import re
import time
import tracemalloc
from typing import Callable, Optional

from hypothesis import HealthCheck, settings

from falcon_tracing_wsgi.tracer.context import SpanContext

#: Deterministic property tests: the same examples on every run, no deadline flakiness.
PROPERTY_SETTINGS = settings(derandomize=True, max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

_HEX = re.compile(r'[0-9a-f]+')


def _check_id(value: Optional[str], widths: tuple[int, ...]) -> None:
    assert isinstance(value, str), value
    assert len(value) in widths, value
    assert _HEX.fullmatch(value), value
    assert value.strip('0'), value


def assert_valid_context(context: Optional[SpanContext], trace_only: bool = False) -> None:
    """``None`` or a context whose ids are exact-width, lower-case, non-zero hex.

    ``trace_only``: the format may give a trace id without a span id (X-Ray's ``Root``
    alone); no other format may."""
    if context is None:
        return
    assert isinstance(context, SpanContext)
    if context.trace_id is None:
        assert context.span_id is None and context.parent_id is None
    elif context.span_id is None:
        assert trace_only, 'a trace id without a span id'
        _check_id(context.trace_id, (16, 32))
        assert context.parent_id is None
    else:
        _check_id(context.trace_id, (16, 32))
        _check_id(context.span_id, (16,))
        if context.parent_id is not None:
            _check_id(context.parent_id, (16,))
    assert context.sampled in (True, False, None)
    assert context.debug in (True, False)
    if context.debug:
        assert context.sampled is True
    assert isinstance(context.baggage, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in context.baggage.items())
    if context.tracestate is not None:
        assert isinstance(context.tracestate, str) and 0 < len(context.tracestate) <= 512


#: Length of the huge header values.
HUGE_SIZE = 32 * 1024 * 1024


def assert_bounded(extract: Callable[[dict[str, str]], object],
                   make_carrier: Callable[[], dict[str, str]]) -> object:
    """Extracting from a carrier with huge values neither allocates nor scans much.

    Allocation is measured with ``tracemalloc`` (deterministic). Time is the best of seven
    calls, each on freshly built values so that no cached hash helps: even a ``memchr``
    pass over 32 MiB takes milliseconds and a bounded parse a few microseconds. The 1 ms
    bound sits between the two with room for a shared machine's noise (a 0.25 ms bound
    failed at 0.28 ms under load); it is a bound on the work, not a speed target.
    """
    carrier = make_carrier()
    gc.collect()
    tracemalloc.start()
    try:
        result = extract(carrier)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f'extract allocated {peak} bytes'
    best = float('inf')
    for _ in range(7):
        carrier = make_carrier()
        start = time.perf_counter()
        extract(carrier)
        best = min(best, time.perf_counter() - start)
    assert best < 0.001, f'extract took {best * 1000:.2f} ms on huge values'
    return result
