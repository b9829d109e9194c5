"""gevent: the pipeline's locks must be cooperative once the process is monkey-patched.

Issue 11 item 13: under ``gunicorn -k gevent --preload`` the reporter is built (and
re-armed by the at-fork hook) before the worker monkey-patches, so its locks and events
were OS ones while its worker thread, started later, is a greenlet; a greenlet waiting on
such a lock blocks every greenlet of the process. Each case runs in a subprocess, because
monkey-patching cannot be undone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip('gevent')

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    from falcon_tracing_wsgi.export.pipeline import BatchReporter
    from falcon_tracing_wsgi.export.zipkin import Endpoint, JsonV2Encoder
    from tests.spans import make_span

    class SlowSender:
        destination = 'slow'
        def __init__(self):
            self.spans = 0
        def send(self, body, span_count, timeout=None):
            time.sleep(0.3)  # cooperative once patched: other greenlets run meanwhile
            self.spans += span_count
        def close(self):
            pass

    mode, when = sys.argv[1], sys.argv[2]
    sender = SlowSender()
    if when == 'before-patch':  # as gunicorn --preload does in the master
        reporter = BatchReporter(sender, JsonV2Encoder(Endpoint('gevent')),
                                 flush_interval=0.05)
    if when == 'fork-before-patch':  # the at-fork hook re-arms in the child, unpatched
        reporter = BatchReporter(sender, JsonV2Encoder(Endpoint('gevent')),
                                 flush_interval=0.05)
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            sys.exit(os.waitstatus_to_exitcode(status))
    from gevent import monkey
    monkey.patch_all()
    import gevent
    if when == 'after-patch':
        reporter = BatchReporter(sender, JsonV2Encoder(Endpoint('gevent')),
                                 flush_interval=0.05)
    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    gevent.spawn(ticker)
    for index in range(10):
        reporter.report(make_span(index))
    gevent.sleep(0.15)  # the worker greenlet is inside its slow send now
    start = time.monotonic()
    ok = reporter.flush(3.0) if mode == 'flush' else reporter.close(3.0)
    elapsed = time.monotonic() - start
    gevent.sleep(0.05)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(json.dumps({'ok': ok, 'elapsed': elapsed, 'max_gap': max(gaps),
                      'sent': sender.spans}))
''')


@pytest.mark.parametrize('when', ['before-patch', 'fork-before-patch', 'after-patch'])
@pytest.mark.parametrize('mode', ['close', 'flush'])
def test_no_greenlet_stalls_while_the_reporter_waits(mode: str, when: str) -> None:
    done = subprocess.run([sys.executable, '-c', _SCRIPT, mode, when], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result['ok'] is True
    assert result['sent'] == 10
    assert result['elapsed'] < 1.5  # the slow send (0.3 s), not the 3 s deadline
    assert result['max_gap'] < 0.25, result  # the other greenlets kept running
