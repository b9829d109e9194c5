"""gunicorn server hooks: a tracer per worker, and no span lost at exit or on a timeout.

Use this module as gunicorn's configuration file::

    gunicorn -c python:falcon_tracing_wsgi.gunicorn myservice.wsgi:app

or import the hooks into your own ``gunicorn.conf.py`` (gunicorn takes one ``-c``)::

    from falcon_tracing_wsgi.gunicorn import (
        post_fork, post_worker_init, worker_exit, worker_abort, on_exit)

If your configuration already defines one of these hooks, call ours from yours.

The hooks (gunicorn's signatures):

``post_fork(server, worker)``
    Builds a fresh tracer and reporter in the new worker from the configuration
    :func:`~falcon_tracing_wsgi.wrap` used (``--preload``: in the master, before the
    fork), or from the environment when ``wrap()`` has not run yet (no ``--preload``:
    the app is imported after this hook), and installs it as the global tracer. The
    worker's identity goes on every span as the process tags ``gunicorn.worker.pid``
    and ``gunicorn.worker.age``. The reporter also re-arms itself after a fork; this
    makes the per-worker tracer explicit and gives it the worker's tags.
``post_worker_init(worker)``
    Without ``--preload``, ``wrap()`` runs in the worker *after* ``post_fork`` and
    installs a tracer without the worker tags; this hook re-installs it with them
    (nothing has been traced yet, so nothing is lost). With ``--preload`` it does
    nothing.
``worker_exit(server, worker)``
    Closes the reporter within ``FALCON_TRACING_SHUTDOWN_TIMEOUT`` and logs **one**
    summary line to gunicorn's error log, naming the format and the destination::

        falcon-tracing-wsgi: worker 4242 (age 1) exit: zipkin to
        http://zipkin:9411/api/v2/spans: 1000 spans sent, 0 dropped, 0 failed in 0.004 s

    (one line; ``, N unsent`` is added when spans were still being sent at the
    deadline). The reporter's own closing line is not logged then, and a worker that
    failed to boot logs none. It runs on every
    kind of worker exit: SIGTERM, ``--max-requests`` recycling, HUP reload, a timeout.
    Requests still running at this point (a ``gthread`` worker past
    ``--graceful-timeout``) are finished first, with ``error=true``.
``worker_abort(worker)``
    gunicorn's worker timeout (the master sends ``SIGABRT``): the request that timed
    out is exactly the one whose trace would otherwise be lost, so every unfinished
    server span is finished with ``error=true``, ``http.aborted=true`` and
    ``http.aborted.reason`` = ``gunicorn worker timeout``, then flushed within half a
    second (the master sends ``SIGKILL`` about a second after ``SIGABRT``). The span
    keeps an ``http.status_code`` only if the headers were already sent: otherwise what
    the client gets is decided by gunicorn after this hook (a 500 page on recent
    versions, nothing on older ones), so no status is claimed.
``on_exit(server)``
    In the master at shutdown: closes the master's reporter (``--preload`` builds one
    there) within the shutdown timeout and logs one summary line.

Decisions:

* **The hooks never break the server.** Every failure is logged and swallowed, with
  one exception: an invalid ``FALCON_TRACING_*`` value raises
  :class:`~falcon_tracing_wsgi.ConfigError` from ``post_fork``, which stops the
  worker from booting with a message naming the variable, as ``wrap()`` would.
* **Only a tracer this package installed is touched**: ours, or the one ``wrap()``
  built for ``FALCON_TRACING_TRACER`` (the OpenTelemetry bridge is flushed and closed
  the same way, and its summary line has no counts). Another library's global tracer
  is left alone.
* **The right process.** gunicorn also calls ``worker_exit`` in the master, for a
  worker that had already died; the hook then does nothing (the master's tracer is
  not the worker's).
* **gunicorn's logger.** The summary lines go through ``server.log``/``worker.log``, so
  they appear in gunicorn's error log with its format and level.

Worker classes: ``sync``, ``gthread`` and ``gevent`` are tested end to end, with and
without ``--preload``; ``sync`` and ``gthread`` also with ``--max-requests`` recycling
and HUP reloads. With ``gthread`` a request that blocks does not trigger gunicorn's
worker timeout (the worker's main thread keeps notifying the master), so
``worker_abort`` is mostly a ``sync`` worker matter. With ``gevent``, set
``FALCON_TRACING_SCOPE_MANAGER=gevent``: the reporter's worker thread becomes a
greenlet, and its locks and events are made again, cooperative, before it starts, even
when the reporter was built before the worker monkey-patched (``--preload``).
``eventlet`` is not tested.
"""

from __future__ import annotations

import logging
import os
import threading
from time import monotonic as _monotonic
from typing import Any, Optional

import opentracing

from . import bootstrap
from .config import TracingConfig
from .middleware import abort_in_flight
from .tracer.tracer import Tracer

__all__ = ['post_fork', 'post_worker_init', 'worker_exit', 'worker_abort', 'on_exit',
           'TAG_WORKER_PID', 'TAG_WORKER_AGE', 'ABORT_REASON', 'EXIT_REASON']

# NOTE: gunicorn reads every module-level name of a ``-c python:`` module that matches
# one of its settings (``config``, ``timeout``, ``workers``, ...). Keep public names to
# the hooks above and the constants below.

_log = logging.getLogger(__name__)

#: Process tags that identify the worker on every span it reports.
TAG_WORKER_PID = 'gunicorn.worker.pid'
TAG_WORKER_AGE = 'gunicorn.worker.age'
_WORKER_TAG_PREFIX = 'gunicorn.worker.'
#: ``http.aborted.reason`` of the spans a worker timeout finishes.
ABORT_REASON = 'gunicorn worker timeout'
#: ``http.aborted.reason`` of requests still running when a worker exits.
EXIT_REASON = 'gunicorn worker exit'

#: Seconds worker_abort (and the worker_exit after it) may spend flushing: gunicorn's
#: master checks its workers about once a second and SIGKILLs an aborted one it finds.
_ABORT_FLUSH_TIMEOUT = 0.5
_DEFAULT_SHUTDOWN_TIMEOUT = 5.0

#: Set by worker_abort in this (worker) process, so worker_exit keeps to the short
#: deadline too.
_aborted = False


# --------------------------------------------------------------------------- the hooks

def post_fork(server: Any, worker: Any) -> None:
    """Install a fresh tracer for this worker, tagged with the worker's identity.

    Raises:
        ConfigError: a ``FALCON_TRACING_*`` variable is invalid (the worker does not
            boot, and the message names the variable).
    """
    _install_for_worker(worker, _logger(server))


def post_worker_init(worker: Any) -> None:
    """Put the worker tags back if ``wrap()`` re-installed the tracer after ``post_fork``."""
    config = bootstrap.installed_config()
    if config is not None and _worker_tags(worker) <= set(config.tags):
        return
    _install_for_worker(worker, _logger(worker))


def worker_exit(server: Any, worker: Any) -> None:
    """Finish what is still running, close the reporter in time, log one summary line."""
    if getattr(worker, 'pid', None) != os.getpid():
        return  # called in the master for a worker that was already gone
    log = _logger(server)
    try:
        unfinished = abort_in_flight(EXIT_REASON)
        if unfinished:
            log.warning('falcon-tracing-wsgi: %d requests were still running at worker '
                        'exit; their spans are finished with error=true', unfinished)
        timeout = _ABORT_FLUSH_TIMEOUT if _aborted else _shutdown_timeout()
        _close(log, f'worker {worker.pid} (age {getattr(worker, "age", "?")}) exit', timeout,
               booted=getattr(worker, 'booted', True) is not False)
    except Exception:
        log.warning('falcon-tracing-wsgi: worker_exit hook failed', exc_info=True)


def worker_abort(worker: Any) -> None:
    """gunicorn's worker timeout: finish the in-flight spans with an error and flush them.

    NOTE: gunicorn calls this from its SIGABRT handler, on the main thread, which may be
    anywhere in the request (a sync worker's request runs there), even inside the
    reporter while it holds its lock. So the flush runs on a helper thread, waited for
    only until the short deadline: a lock the interrupted frame holds cannot hold the
    hook (the exit that follows unwinds that frame and releases it, and worker_exit
    then closes the reporter within the same short deadline).
    """
    global _aborted
    _aborted = True
    log = _logger(worker)
    try:
        count = abort_in_flight(ABORT_REASON)
        tracer = _our_tracer()
        flushed = True
        if tracer is not None:
            flushed = _bounded_flush(tracer, min(_shutdown_timeout(), _ABORT_FLUSH_TIMEOUT))
        log.warning('falcon-tracing-wsgi: worker %s timed out; %d in-flight spans finished '
                    'with error=true%s', getattr(worker, 'pid', os.getpid()), count,
                    '' if flushed else ' (the flush did not complete in time)')
    except Exception:
        log.warning('falcon-tracing-wsgi: worker_abort hook failed', exc_info=True)


def _bounded_flush(tracer: Any, timeout: float) -> bool:
    """``tracer.flush(timeout)`` on a helper thread, waited for ``timeout`` at most."""
    result: list[bool] = []
    helper = threading.Thread(target=lambda: result.append(bool(tracer.flush(timeout))),
                              name='falcon-tracing-wsgi-abort-flush', daemon=True)
    helper.start()
    helper.join(timeout + 0.05)
    return bool(result and result[0])


def on_exit(server: Any) -> None:
    """In the master at shutdown: close its reporter in time and log one summary line."""
    log = _logger(server)
    try:
        _close(log, f'master {os.getpid()} exit', _shutdown_timeout())
    except Exception:
        log.warning('falcon-tracing-wsgi: on_exit hook failed', exc_info=True)


# --------------------------------------------------------------------------- helpers

def _logger(owner: Any) -> Any:
    """gunicorn's logger (``server.log``/``worker.log``), else this module's."""
    log = getattr(owner, 'log', None)
    return log if log is not None else _log


def _our_tracer() -> Optional[Any]:
    """The global tracer when this package installed it, else None.

    That is our :class:`Tracer`, or whatever ``bootstrap.install()`` built for another
    ``FALCON_TRACING_TRACER`` (the OpenTelemetry bridge), which has ``flush(timeout)``
    and ``close(timeout)`` too.
    """
    tracer = opentracing.global_tracer()
    if isinstance(tracer, Tracer):
        return tracer
    if (bootstrap.installed_config() is not None and callable(getattr(tracer, 'flush', None))
            and callable(getattr(tracer, 'close', None))):
        return tracer
    return None


def _foreign_tracer() -> bool:
    """Whether the global tracer is another library's (not ours, not the no-op one)."""
    tracer = opentracing.global_tracer()
    return not isinstance(tracer, Tracer) and type(tracer) is not opentracing.Tracer


def _shutdown_timeout() -> float:
    config = bootstrap.installed_config()
    if config is not None:
        return config.shutdown_timeout
    reporter = getattr(_our_tracer(), 'reporter', None)
    timeout = getattr(reporter, 'shutdown_timeout', None)
    return float(timeout) if isinstance(timeout, (int, float)) else _DEFAULT_SHUTDOWN_TIMEOUT


def _worker_tags(worker: Any) -> set[tuple[str, str]]:
    pid = getattr(worker, 'pid', None) or os.getpid()
    return {(TAG_WORKER_PID, str(pid)), (TAG_WORKER_AGE, str(getattr(worker, 'age', 0)))}


def _with_worker_tags(config: TracingConfig, worker: Any) -> TracingConfig:
    # Tags of another worker (a config built in a process that was itself a worker)
    # are replaced, never accumulated.
    kept = tuple(tag for tag in config.tags if not tag[0].startswith(_WORKER_TAG_PREFIX))
    return config.replace(tags=kept + tuple(sorted(_worker_tags(worker))))


def _install_for_worker(worker: Any, log: Any) -> None:
    config = bootstrap.installed_config()
    if config is None:
        if _foreign_tracer():
            log.debug('falcon-tracing-wsgi: another tracer is installed; leaving it alone')
            return
        config = TracingConfig.from_env()  # ConfigError stops the worker, as wrap() would
    if not config.enabled:
        return
    try:
        bootstrap.install(_with_worker_tags(config, worker))
    except Exception:
        log.warning('falcon-tracing-wsgi: could not install the tracer for worker %s; '
                    'it keeps the tracer it inherited', getattr(worker, 'pid', '?'),
                    exc_info=True)
        return
    log.debug('falcon-tracing-wsgi: tracer installed for worker %s (age %s)',
              getattr(worker, 'pid', '?'), getattr(worker, 'age', '?'))


def _close(log: Any, who: str, timeout: float, booted: bool = True) -> None:
    """Close the global tracer's reporter within ``timeout`` and log one summary line.

    The line names the format and the destination and replaces the reporter's own
    summary (one line per process). A worker that never booted and reported nothing
    logs none: "0 spans sent" would only suggest it had served.
    """
    tracer = _our_tracer()
    if tracer is None:
        return
    reporter = getattr(tracer, 'reporter', None)
    summary = getattr(reporter, 'summary', None)
    started = _monotonic()
    if callable(summary):
        ok = reporter.close(timeout, log_summary=False)  # type: ignore[union-attr]
    else:  # a reporter or tracer of another kind: its own close, its own logging
        ok = tracer.close(timeout)
    elapsed = _monotonic() - started
    stats_of = getattr(reporter, 'stats', None)
    stats = stats_of() if callable(stats_of) else None
    if not isinstance(stats, dict) or not callable(summary):
        (log.info if ok else log.warning)(
            'falcon-tracing-wsgi: %s: tracer closed%s in %.3f s', who,
            '' if ok else ' (not everything was sent)', elapsed)
        return
    total = sum(stats.get(key, 0) for key in ('queued', 'sent', 'dropped', 'failed'))
    if not booted and not total:
        return
    clean = ok and stats.get('sent', 0) == total
    (log.info if clean else log.warning)('falcon-tracing-wsgi: %s: %s in %.3f s', who,
                                         summary(), elapsed)
