"""gunicorn settings for ``bench_e2e.py``: count the requests each worker answered.

``post_request`` runs in the worker after every request (whatever the variant), and
``worker_exit`` writes the worker's count to ``$BENCH_COUNT_DIR/<pid>`` so the benchmark
can compare the spans the sink received with the requests the server really answered
(wrk's own count misses requests still in flight when it stops).
"""

import os

accesslog = None
_answered = 0


def post_request(worker, req, environ, resp):
    global _answered
    _answered += 1


def worker_exit(server, worker):
    directory = os.environ.get('BENCH_COUNT_DIR')
    if directory:
        with open(os.path.join(directory, str(worker.pid)), 'w') as out:
            out.write(str(_answered))
