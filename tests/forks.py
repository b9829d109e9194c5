"""Real forks for the fork-safety tests: run work in a child, get its result back."""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Callable


def run_in_child(work: Callable[[], Any], limit: int = 20) -> Any:
    """Fork; run ``work()`` in the child (killed after ``limit`` s) and return its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            signal.alarm(limit)  # a child stuck on a lock dies instead of hanging the test
            os.close(read_end)
            os.write(write_end, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, 'the child hung (or failed)'
    return json.loads(data)
