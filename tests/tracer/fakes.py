"""Small collaborators for the tracer tests: a propagator, samplers, ids and a clock.

The propagator is deliberately tiny (it is not B3 or W3C): the tracer tests must not depend
on the propagation package, only on the Propagator contract in ``_types.py``.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Optional

from falcon_tracing_wsgi.tracer.context import SpanContext

_HEX = frozenset(string.hexdigits.lower())
_BAGGAGE_PREFIX = 'x-bag-'


def _hex(value: Optional[str], widths: tuple[int, ...]) -> Optional[str]:
    if value is None or len(value) not in widths or not set(value) <= _HEX:
        return None
    return value


class FakePropagator:
    """Reads and writes ``X-Trace``, ``X-Span``, ``X-Sampled`` (1/0), ``X-Debug`` and
    ``X-Bag-<key>``; reads lower-case names only, as the contract says."""

    fields = ('x-trace', 'x-span', 'x-sampled', 'x-debug')

    def __init__(self) -> None:
        self.seen: list[Mapping[str, str]] = []

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        self.seen.append(carrier)
        raw_trace, raw_span = carrier.get('x-trace'), carrier.get('x-span')
        sampled_raw = carrier.get('x-sampled')
        debug = carrier.get('x-debug') == '1'
        baggage = {name[len(_BAGGAGE_PREFIX):]: carrier[name] for name in carrier
                   if name.startswith(_BAGGAGE_PREFIX)}
        if raw_trace is None and raw_span is None and sampled_raw is None and not debug:
            return None
        trace_id, span_id = _hex(raw_trace, (16, 32)), _hex(raw_span, (16,))
        if (raw_trace is not None or raw_span is not None) and (trace_id is None
                                                                or span_id is None):
            return None
        sampled = None if sampled_raw is None else sampled_raw == '1'
        return SpanContext(trace_id, span_id, None, sampled, debug, baggage or None)

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        if context.trace_id is not None and context.span_id is not None:
            carrier['X-Trace'] = context.trace_id
            carrier['X-Span'] = context.span_id
        if context.sampled is not None:
            carrier['X-Sampled'] = '1' if context.sampled else '0'
        if context.debug:
            carrier['X-Debug'] = '1'
        for key, value in context.baggage.items():
            carrier['X-Bag-' + key] = value


class BrokenPropagator:
    """A propagator with a bug: both methods raise."""

    fields = ()

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        raise RuntimeError('extract bug')

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        raise RuntimeError('inject bug')


class RecordingSampler:
    """Answers from a list of decisions (repeating the last) and records its calls."""

    def __init__(self, *decisions: bool) -> None:
        self._decisions = list(decisions) or [True]
        self.calls: list[tuple[str, str]] = []

    def is_sampled(self, trace_id: str, operation_name: str) -> bool:
        self.calls.append((trace_id, operation_name))
        index = min(len(self.calls), len(self._decisions)) - 1
        return self._decisions[index]


class BrokenSampler:
    def is_sampled(self, trace_id: str, operation_name: str) -> bool:
        raise RuntimeError('sampler bug')


class RecordingReporter:
    """Records reports and the timeouts flush/close were called with."""

    def __init__(self, result: bool = True) -> None:
        self.spans: list[object] = []
        self.calls: list[tuple[str, float]] = []
        self._result = result

    def report(self, span: object) -> None:
        self.spans.append(span)

    def flush(self, timeout: float) -> bool:
        self.calls.append(('flush', timeout))
        return self._result

    def close(self, timeout: float) -> bool:
        self.calls.append(('close', timeout))
        return self._result


class BrokenReporter(RecordingReporter):
    def report(self, span: object) -> None:
        raise RuntimeError('report bug')

    def flush(self, timeout: float) -> bool:
        raise RuntimeError('flush bug')

    def close(self, timeout: float) -> bool:
        raise RuntimeError('close bug')


class SequentialIds:
    """Reproducible ids: 1, 2, 3, ... as 32-hex trace ids and 16-hex span ids."""

    def __init__(self) -> None:
        self._counter: Iterator[int] = itertools.count(1)

    def trace_id(self) -> str:
        return '%032x' % next(self._counter)

    def span_id(self) -> str:
        return '%016x' % next(self._counter)


class ManualClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CaseInsensitiveCarrier(dict):
    """A carrier that declares it already answers lower-case names."""

    case_insensitive = True
