"""The OpenTracing conformance suites, run against our tracer and every scope manager we ship."""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

import opentracing
import pytest
from opentracing.harness.api_check import APICompatibilityCheckMixin
from opentracing.harness.scope_check import ScopeCompatibilityCheckMixin
from opentracing.scope_managers import ThreadLocalScopeManager

from falcon_tracing_wsgi.testing import InMemoryReporter
from falcon_tracing_wsgi.tracer import ConstSampler, ContextVarScopeManager, Tracer

from .fakes import FakePropagator


def _is_parent(parent: opentracing.Span | None, span: opentracing.Span) -> bool:
    if parent is None:
        return span.context.parent_id is None
    return (span.context.trace_id == parent.context.trace_id
            and span.context.parent_id == parent.context.span_id)


class _OurTracerChecks(APICompatibilityCheckMixin):
    sampled = True
    make_scope_manager: Callable[[], opentracing.ScopeManager] = ContextVarScopeManager

    def tracer(self) -> Tracer:
        return Tracer(InMemoryReporter(), ConstSampler(self.sampled), FakePropagator(),
                      self.make_scope_manager())

    def check_baggage_values(self) -> bool:
        return True

    def check_scope_manager(self) -> bool:
        return True

    def is_parent(self, parent: opentracing.Span | None, span: opentracing.Span) -> bool:
        return _is_parent(parent, span)


class TestSampledTracerContextVars(_OurTracerChecks):
    """Sampled spans, default (contextvars) scope manager."""


class TestUnsampledTracerContextVars(_OurTracerChecks):
    """Unsampled spans must honour the same API: context, baggage, parenting."""

    sampled = False


class TestSampledTracerThreadLocal(_OurTracerChecks):
    """Sampled spans with opentracing's thread-local scope manager."""

    make_scope_manager = ThreadLocalScopeManager


class TestContextVarScopeManager(ScopeCompatibilityCheckMixin):
    def scope_manager(self) -> opentracing.ScopeManager:
        return ContextVarScopeManager()


class TestContextVarScopeManagerInThread(TestContextVarScopeManager):
    """Each check run in a fresh thread (gthread workers)."""

    def run_test(self, test_fn: Callable[[], None]) -> None:
        errors: list[BaseException] = []

        def target() -> None:
            try:
                test_fn()
            except BaseException as exc:  # pragma: no cover - only on failure
                errors.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
        if errors:
            raise errors[0]


class TestContextVarScopeManagerInAsyncioTask(TestContextVarScopeManager):
    """Each check run inside an asyncio task."""

    def run_test(self, test_fn: Callable[[], None]) -> None:
        async def main() -> None:
            await asyncio.get_running_loop().create_task(_as_coroutine(test_fn))

        asyncio.run(main())


async def _as_coroutine(test_fn: Callable[[], None]) -> None:
    test_fn()


class TestThreadLocalScopeManager(ScopeCompatibilityCheckMixin):
    def scope_manager(self) -> opentracing.ScopeManager:
        return ThreadLocalScopeManager()


class TestGeventScopeManager(ScopeCompatibilityCheckMixin):
    """Runs only where gevent is installed (``pip install gevent``)."""

    def scope_manager(self) -> opentracing.ScopeManager:
        pytest.importorskip('gevent')
        from falcon_tracing_wsgi.tracer import build_scope_manager
        return build_scope_manager('gevent')

    def run_test(self, test_fn: Callable[[], None]) -> None:
        gevent = pytest.importorskip('gevent')
        gevent.spawn(test_fn).get(timeout=10)


class TestMakeTracerWithRealPropagators(_OurTracerChecks):
    """The public testing helper, with B3 + W3C propagation instead of the fake."""

    def tracer(self) -> Tracer:
        from falcon_tracing_wsgi.testing import make_tracer
        return make_tracer(('b3', 'w3c'))[0]
