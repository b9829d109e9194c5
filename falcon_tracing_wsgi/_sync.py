"""Locks that survive ``fork()``: every lock on the reporting path is new in a child.

A thread that holds a lock when another thread forks the process does not exist in the
child, so the child's copy of that lock stays held for ever: the child's first
``close()``, ``flush()`` or send that takes it never returns. Every object on the
reporting path that owns a lock (the export pipeline, the senders, the rate-limiting
sampler) therefore registers a method that gives it fresh locks in a forked child.

:func:`after_fork_in_child` registers such a method through a weak reference, like the
OpenTelemetry SDK does, so that the at-fork registry (which lives as long as the
interpreter and cannot unregister) never keeps an object alive.

Locks under gevent: synchronisation objects must match the concurrency model the process
runs under when they are *used*. ``threading.Lock`` made before
``gevent.monkey.patch_all()`` (gunicorn ``-k gevent --preload`` builds the tracer in
the master, before its workers patch) is an OS lock; a greenlet waiting on it blocks the
whole OS thread, and with it every other greenlet, including the one that would release
it. :func:`lock_factory` names the factory of the moment, so an owner can see that
``threading`` was patched since it made its locks and make them again (the pipeline
does, before it starts its worker).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from typing import Any, Callable

__all__ = ['after_fork_in_child', 'lock_factory']


def _call_weak(method: weakref.WeakMethod) -> None:  # type: ignore[type-arg]
    bound = method()
    if bound is not None:
        bound()


def after_fork_in_child(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in every forked child, as long as its object lives.

    Args:
        method: a bound method; only a weak reference to its object is kept.
    """
    os.register_at_fork(after_in_child=functools.partial(
        _call_weak, weakref.WeakMethod(method)))


def lock_factory() -> Any:
    """``threading.Lock`` as it is now (gevent's cooperative lock once patched)."""
    return threading.Lock
