"""gunicorn settings for the benchmarks: count the requests each worker answered.

``post_request`` runs in the worker after every request (whatever the variant), and
``worker_exit`` writes the worker's figures as JSON to ``$BENCH_COUNT_DIR/<pid>``:
``{"answered": N}``, so ``bench_e2e.py`` can compare the spans the sink received with the
requests the server really answered (wrk's own count misses requests still in flight
when it stops).

With ``BENCH_TRACING_HOOKS=1`` the package's own hooks (``falcon_tracing_wsgi.gunicorn``,
as the README tells a deployment to use them) run too: a tracer per worker, and at
worker exit the reporter closed within ``FALCON_TRACING_SHUTDOWN_TIMEOUT`` and one
summary line. The file then also holds the reporter's final ``stats()`` as
``"reporter"`` (``bench_delivery.py``'s gunicorn scenario reads spans made, sent and
dropped from it). ``bench_e2e.py`` leaves them off so its bare variant imports nothing
of the package (its peak RSS is the floor); its workers flush at exit through the
reporter's ``atexit`` hook instead.
"""

import json
import os
import threading

accesslog = None

if os.environ.get('BENCH_TRACING_HOOKS') == '1':
    from falcon_tracing_wsgi.gunicorn import on_exit, post_fork, post_worker_init, worker_abort
    from falcon_tracing_wsgi.gunicorn import worker_exit as _tracing_worker_exit
else:
    _tracing_worker_exit = None

# NOTE: a gthread worker runs post_request on its pool threads; ``+= 1`` on a global is
# not atomic across threads, so the count takes a lock (once per request, uncontended).
_lock = threading.Lock()
_answered = 0


def post_request(worker, req, environ, resp):
    global _answered
    with _lock:
        _answered += 1


def worker_exit(server, worker):
    if _tracing_worker_exit is not None:
        _tracing_worker_exit(server, worker)
    directory = os.environ.get('BENCH_COUNT_DIR')
    if not directory or worker.pid != os.getpid():
        return  # gunicorn also calls this in the master for a worker already gone
    figures = {'answered': _answered}
    if _tracing_worker_exit is not None:
        import opentracing
        reporter = getattr(opentracing.global_tracer(), 'reporter', None)
        if reporter is not None:
            figures['reporter'] = reporter.stats()
    with open(os.path.join(directory, str(worker.pid)), 'w') as out:
        json.dump(figures, out)
