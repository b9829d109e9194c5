"""Samplers: the decision for a new trace (or one whose caller deferred it).

Design:

* A sampler is asked **only** when the tracer has no decision to follow: a new root
  span, a parent that deferred (B3 without ``X-B3-Sampled``), or an inbound decision the
  tracer was told not to trust. A child of a sampled span is always sampled, so a trace is
  never cut in half inside one service.
* :class:`ProbabilisticSampler` decides from the trace id alone (its low 64 bits compared
  with ``rate * 2**64``, as OpenTelemetry's ``TraceIdRatioBased`` does). Every service
  configured with the same rate therefore reaches the same decision for the same trace,
  even when a caller deferred, and a service with a higher rate samples a superset of the
  traces a lower-rate service samples.
* :class:`RateLimitingSampler` caps the number of new traces per second in *this process*
  with a token bucket (a gunicorn service with 4 workers samples up to 4x the limit). It
  takes a lock for the few instructions that move tokens, so gthread workers never share a
  token; the lock is uncontended in sync workers and costs well under a microsecond.
* :func:`build_sampler` picks the cheapest sampler that gives the configured behaviour, so
  the common rates 1.0 and 0.0 cost one attribute lookup per trace.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from .._sync import after_fork_in_child
from .._types import Sampler

__all__ = ['ConstSampler', 'ProbabilisticSampler', 'RateLimitingSampler', 'build_sampler']

_TWO_POW_64 = 1 << 64


class ConstSampler:
    """Always gives the same decision.

    Args:
        decision: ``True`` to sample every new trace, ``False`` to sample none.
    """

    __slots__ = ('decision',)

    def __init__(self, decision: bool) -> None:
        self.decision = bool(decision)

    def is_sampled(self, trace_id: str, operation_name: str) -> bool:
        """Return the constant decision."""
        return self.decision

    def __repr__(self) -> str:
        return f'ConstSampler({self.decision!r})'


class ProbabilisticSampler:
    """Samples a fixed fraction of traces, consistently across services.

    Args:
        rate: the fraction of traces to sample, from 0.0 to 1.0.

    Raises:
        ValueError: ``rate`` is not a number between 0.0 and 1.0.

    Example::

        sampler = ProbabilisticSampler(0.25)
        sampler.is_sampled('80f198ee56343ba864fe8b2a57d3eff7', 'GET /users')
    """

    __slots__ = ('rate', '_threshold')

    def __init__(self, rate: float) -> None:
        self.rate = _check_rate(rate)
        # NOTE: rate 1.0 gives 2**64, above every 64-bit value, so it samples everything.
        self._threshold = round(self.rate * _TWO_POW_64)

    def is_sampled(self, trace_id: str, operation_name: str) -> bool:
        """Decide from the low 64 bits of ``trace_id`` (16 or 32 hex characters)."""
        try:
            # PERF: slicing the last 16 hex digits parses one 64-bit int instead of 128 bits.
            return int(trace_id[-16:], 16) < self._threshold
        except (TypeError, ValueError):
            # The tracer only passes ids it drew or validated; a foreign caller's bad id
            # is simply not sampled rather than breaking its request.
            return False

    def __repr__(self) -> str:
        return f'ProbabilisticSampler({self.rate!r})'


class RateLimitingSampler:
    """Limits how many traces per second another sampler may start in this process.

    The inner sampler decides first; a trace it accepts then needs a token from a bucket
    that refills at ``traces_per_second`` and holds at most one second's worth (at least
    one token), so a burst after a quiet period is bounded too.

    Args:
        inner: the sampler whose positive decisions are limited.
        traces_per_second: the refill rate; must be a positive finite number.
        clock: a monotonic clock in seconds (injectable for tests).

    Raises:
        ValueError: ``traces_per_second`` is not a positive finite number.
    """

    __slots__ = ('inner', 'traces_per_second', '_capacity', '_tokens', '_last', '_clock',
                 '_lock', '__weakref__')

    def __init__(self, inner: Sampler, traces_per_second: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not _is_number(traces_per_second) or not (0 < traces_per_second < math.inf):
            raise ValueError(
                f'traces_per_second must be a positive finite number, got '
                f'{traces_per_second!r}; to sample no traces use ConstSampler(False)')
        self.inner = inner
        self.traces_per_second = float(traces_per_second)
        self._capacity = max(1.0, self.traces_per_second)
        # Start full: the first requests after a (re)start are the interesting ones.
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        # A fork while another thread holds the lock must not leave it held in the child.
        after_fork_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def is_sampled(self, trace_id: str, operation_name: str) -> bool:
        """Return the inner decision, turned to ``False`` when no token is left."""
        if not self.inner.is_sampled(trace_id, operation_name):
            return False
        with self._lock:
            now = self._clock()
            tokens = self._tokens + (now - self._last) * self.traces_per_second
            self._last = now
            if tokens > self._capacity:
                tokens = self._capacity
            if tokens < 1.0:
                self._tokens = tokens
                return False
            self._tokens = tokens - 1.0
            return True

    def __repr__(self) -> str:
        return f'RateLimitingSampler({self.inner!r}, {self.traces_per_second!r})'


def build_sampler(rate: float, rate_limit: float) -> Sampler:
    """Return the cheapest sampler that samples ``rate`` of new traces, at most
    ``rate_limit`` per second per process.

    Args:
        rate: the fraction of new traces to sample, 0.0 to 1.0. ``1.0`` gives
            ``ConstSampler(True)``, ``0.0`` gives ``ConstSampler(False)``, anything in
            between a :class:`ProbabilisticSampler`.
        rate_limit: the most new traces to sample per second in this process;
            ``0`` means no limit. A positive limit wraps the sampler in a
            :class:`RateLimitingSampler` (not when ``rate`` is 0: nothing to limit).

    Raises:
        ValueError: ``rate`` is outside 0..1 or ``rate_limit`` is negative or not finite.

    Example::

        build_sampler(1.0, 0)      # ConstSampler(True)
        build_sampler(0.1, 100)    # RateLimitingSampler(ProbabilisticSampler(0.1), 100.0)
    """
    rate = _check_rate(rate)
    if not _is_number(rate_limit) or not (0 <= rate_limit < math.inf):
        raise ValueError(f'rate_limit must be 0 (no limit) or a positive number of traces '
                         f'per second, got {rate_limit!r}')
    if rate == 0.0:
        return ConstSampler(False)
    sampler: Sampler = ConstSampler(True) if rate == 1.0 else ProbabilisticSampler(rate)
    if rate_limit > 0:
        sampler = RateLimitingSampler(sampler, rate_limit)
    return sampler


def _is_number(value: object) -> bool:
    # bool is an int subclass, but True as a rate is almost certainly a mistake.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_rate(rate: object) -> float:
    if not _is_number(rate) or not (0.0 <= rate <= 1.0):  # type: ignore[operator]
        raise ValueError(f'the sampling rate must be a number from 0.0 to 1.0 (0.25 samples '
                         f'a quarter of the traces), got {rate!r}')
    return float(rate)  # type: ignore[arg-type]
