"""Scope managers: contextvars isolation across threads and asyncio tasks; the factory."""

from __future__ import annotations

import asyncio
import sys
import threading
from unittest import mock

import opentracing
import pytest
from opentracing.scope_managers import ThreadLocalScopeManager

from falcon_tracing_wsgi.testing import InMemoryReporter
from falcon_tracing_wsgi.tracer import (ConstSampler, ContextVarScopeManager, Tracer,
                                        build_scope_manager)
from falcon_tracing_wsgi.tracer.scope import bare_activation

from .fakes import FakePropagator


def _tracer(scope_manager=None):
    reporter = InMemoryReporter()
    return Tracer(reporter, ConstSampler(True), FakePropagator(), scope_manager), reporter


def test_default_scope_manager_is_contextvars():
    tracer, _ = _tracer()
    assert isinstance(tracer.scope_manager, ContextVarScopeManager)


def test_each_thread_sees_only_its_own_active_span():
    """Threads interleaved by barriers never see each other's spans, nor the main one's."""
    tracer, reporter = _tracer()
    workers = 4
    both_active = threading.Barrier(workers)
    seen: dict[int, tuple[object, object, object]] = {}

    def work(index: int) -> None:
        before = tracer.active_span
        with tracer.start_active_span(f'worker-{index}') as scope:
            both_active.wait(timeout=10)
            child = tracer.start_span('child')
            seen[index] = (before, tracer.active_span is scope.span,
                           child.context.parent_id == scope.span.context.span_id)
            both_active.wait(timeout=10)

    with tracer.start_active_span('main') as main:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert tracer.active_span is main.span
    assert seen == {i: (None, True, True) for i in range(workers)}
    assert len(reporter.spans) == workers + 1


def test_asyncio_tasks_inherit_the_active_span_and_stay_isolated():
    """Tasks see their creator's span as parent; concurrent tasks don't leak into each other."""
    tracer, reporter = _tracer()
    results: dict[str, tuple[bool, bool]] = {}

    async def handler(name: str, started: asyncio.Event, other: asyncio.Event,
                      parent_span_id: str) -> None:
        inherited = tracer.active_span.context.span_id == parent_span_id
        with tracer.start_active_span(name) as scope:
            started.set()
            await other.wait()  # the other task is now inside its own span
            results[name] = (inherited, tracer.active_span is scope.span)

    async def main() -> None:
        with tracer.start_active_span('request') as scope:
            parent_id = scope.span.context.span_id
            a_started, b_started = asyncio.Event(), asyncio.Event()
            await asyncio.gather(handler('a', a_started, b_started, parent_id),
                                 handler('b', b_started, a_started, parent_id))
            assert tracer.active_span is scope.span

    asyncio.run(main())
    assert results == {'a': (True, True), 'b': (True, True)}
    request = next(s for s in reporter.spans if s.operation_name == 'request')
    children = [s for s in reporter.spans if s.operation_name in ('a', 'b')]
    assert {s.context.parent_id for s in children} == {request.context.span_id}


def test_closing_an_inherited_scope_in_a_task_does_not_raise():
    """A task closing a scope activated by its creator (a copied context) is harmless."""
    tracer, reporter = _tracer()

    async def closer(scope: opentracing.Scope) -> None:
        scope.close()
        assert tracer.active_span is None

    async def main() -> None:
        scope = tracer.start_active_span('outer')
        await asyncio.get_running_loop().create_task(closer(scope))
        assert tracer.active_span is scope.span  # the creator's context is untouched

    asyncio.run(main())
    assert [s.operation_name for s in reporter.spans] == ['outer']


def test_two_managers_do_not_share_state():
    first, second = ContextVarScopeManager(), ContextVarScopeManager()
    span = opentracing.Span(None, opentracing.SpanContext())
    with first.activate(span, False):
        assert first.active.span is span
        assert second.active is None


@pytest.mark.parametrize('name, cls', [
    pytest.param('contextvars', ContextVarScopeManager, id='contextvars'),
    pytest.param('threadlocal', ThreadLocalScopeManager, id='threadlocal'),
])
def test_build_scope_manager(name, cls):
    first, second = build_scope_manager(name), build_scope_manager(name)
    assert type(first) is cls and first is not second


@pytest.mark.parametrize('name', [pytest.param('asyncio', id='unsupported'),
                                  pytest.param('ContextVars', id='wrong-case'),
                                  pytest.param('', id='empty')])
def test_build_scope_manager_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="choose one of 'contextvars', 'threadlocal', 'gevent'"):
        build_scope_manager(name)


def test_gevent_scope_manager_without_gevent_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'gevent', None)  # makes `import gevent` fail
    monkeypatch.delitem(sys.modules, 'opentracing.scope_managers.gevent', raising=False)
    with pytest.raises(ValueError, match='pip install gevent'):
        build_scope_manager('gevent')


def test_gevent_scope_manager_with_gevent():
    pytest.importorskip('gevent')
    from opentracing.scope_managers.gevent import GeventScopeManager
    assert isinstance(build_scope_manager('gevent'), GeventScopeManager)


def _bare(manager, span):
    var = bare_activation(manager)
    previous = var.get()
    var.set((span, previous))
    return var, previous


@pytest.mark.parametrize('steps, active_after', [
    pytest.param((), 'server', id='read-only'),
    pytest.param(('close-active',), 'outer', id='closing-its-scope-deactivates-it'),
    pytest.param(('child',), 'server', id='a-child-scope-closed-restores-it'),
    pytest.param(('child-leaked',), 'child', id='a-leaked-child-stays-until-reset'),
])
def test_a_bare_activation_looks_like_activate_through_the_api(steps, active_after):
    manager = ContextVarScopeManager()
    outer = manager.activate(mock.Mock(name='outer'), False)
    spans = {'server': mock.Mock(name='server'), 'child': mock.Mock(name='child')}
    var, previous = _bare(manager, spans['server'])
    scope = manager.active
    assert scope.span is spans['server'] and manager.active is scope  # made once
    for step in steps:
        if step == 'close-active':
            manager.active.close()
        else:
            child = manager.activate(spans['child'], True)
            if step == 'child':
                child.close()
                spans['child'].finish.assert_called_once_with()
    if active_after == 'outer':
        assert manager.active is outer
    else:
        assert manager.active.span is spans[active_after]
    spans['server'].finish.assert_not_called()
    var.set(previous)  # the reset: what was active before, whatever came in between
    assert manager.active is outer


@pytest.mark.parametrize('manager', [
    pytest.param(ThreadLocalScopeManager(), id='threadlocal'),
    pytest.param(mock.Mock(spec=opentracing.ScopeManager), id='other')])
def test_only_our_manager_offers_a_bare_activation(manager):
    assert bare_activation(manager) is None
