"""The file transport: encoded spans written to a stream or a file (the ``log`` reporter).

Each batch is written as JSON lines (one span object per line, each line ended), which
``jq``/``grep`` and log shippers read.

Decisions (a log destination can block: a full pipe, a stalled container log driver, a
hung network file system; tracing must never be why a shutdown hangs):

* **Writes go to the file descriptor**, not through Python's buffered stream, whenever
  the destination has one (``sys.stderr``, a file opened by path). A thread blocked in a
  buffered stream's ``write()`` holds that stream's internal lock, and then every other
  writer, ``flush()`` and the interpreter's own flush of ``sys.stderr`` at exit wait on
  it (at exit the interpreter gives up after a second with a fatal error, which itself
  blocks writing to the same stderr). The stream is flushed first, so whatever the
  application printed before stays before the spans. A stream without a descriptor (a
  ``StringIO``, a test's capture) is written through its ``write()``.
* **Bounded writes.** On a pipe, socket or terminal the sender waits for room with
  ``poll()`` and writes at most ``PIPE_BUF`` bytes at a time (which a pipe with room
  takes without blocking), so a send never takes longer than its ``timeout`` (the
  reporter's remaining time, capped by ``timeout`` given here). A regular file is
  written directly. A send that times out before writing anything may be retried; one
  that wrote part of a batch may not (the spans written would be duplicated), and the
  next batch starts with a newline so that the cut line stays one bad line.
* :meth:`FileSender.close` **never waits** for a write in progress: it marks the sender
  closed, and the writing thread closes the file when its write returns.
* **Fork**: a forked child gets a fresh lock (the parent's may be held by a thread that
  does not exist in the child); the file descriptor is shared, and appends from both
  processes interleave by whole writes.
"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
import threading
from time import monotonic as _monotonic
from typing import IO, Any, Optional, Union

from .._sync import after_fork_in_child
from .._types import SendError
from ._framing import Body, BodyBuffer, join_text

__all__ = ['FileSender', 'frame_json_lines']

#: The most bytes written at once to a pipe, socket or terminal that poll() says has room.
_CHUNK = getattr(select, 'PIPE_BUF', 512)
_DEFAULT_TIMEOUT = 5.0


def frame_json_lines(encoded: list[str]) -> bytes:
    """Frame a batch as JSON lines: one span object per line, each line ended."""
    return join_text(encoded, '', '\n', '\n') if encoded else b''


def frame_json_lines_into(encoded: list[str], buffer: BodyBuffer) -> Body:
    """:func:`frame_json_lines`, a large body written into ``buffer`` (see ``_framing``)."""
    return join_text(encoded, '', '\n', '\n', buffer) if encoded else b''


class _Timeout(Exception):
    """A bounded write ran out of time; ``written`` bytes went out before."""

    def __init__(self, written: int) -> None:
        super().__init__(written)
        self.written = written


class FileSender:
    """Writes spans as JSON lines to a stream or a file (the ``log`` reporter).

    Args:
        stream_or_path: a text or binary stream (written to and flushed, never closed),
            or a file path (opened for appending on the first batch, closed by
            :meth:`close`). ``None`` means ``sys.stderr``, looked up at each write so
            that a replaced ``sys.stderr`` is honoured.
        timeout: the most seconds one batch may take to write to a pipe, socket or
            terminal (the reporter's remaining time caps it further).

    A failed write raises a :class:`SendError`; it is retryable only when nothing was
    written.
    """

    def __init__(self, stream_or_path: Union[None, str, os.PathLike[str], IO[Any]] = None,
                 *, timeout: float = _DEFAULT_TIMEOUT) -> None:
        self._path: Optional[str] = None
        self._stream: Optional[IO[Any]] = None
        self._fd = -1  # the file this sender opened (by path), or -1
        if stream_or_path is None:
            pass
        elif isinstance(stream_or_path, (str, os.PathLike)):
            self._path = os.fspath(stream_or_path)
        elif hasattr(stream_or_path, 'write'):
            self._stream = stream_or_path
        else:
            raise ValueError(f'FileSender needs a stream, a path or None, '
                             f'got {stream_or_path!r}')
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not 0 < timeout < float('inf'):
            raise ValueError(f'FileSender timeout must be a number > 0, got {timeout!r}')
        self.timeout = float(timeout)
        self._closing = False
        self._cut = False  # the last write stopped inside a line
        self._lock = threading.Lock()  # one writer; close() only ever tries it
        after_fork_in_child(self._after_fork_in_child)

    frame = staticmethod(frame_json_lines)
    frame_into = staticmethod(frame_json_lines_into)
    #: send() has written the body (or given up) when it returns, and keeps no reference:
    #: the pipeline may hand it a view of storage it reuses (see export._framing). A
    #: stream without a descriptor gets a copy as bytes.
    borrows_body = True

    @property
    def destination(self) -> str:
        """Where the spans go, for log lines: the path, ``stderr`` or the stream."""
        return self._describe()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def send(self, body: Body, span_count: int, timeout: Optional[float] = None) -> None:
        """Write one framed batch (JSON lines) and flush.

        Args:
            body: the JSON lines (from :meth:`frame`).
            span_count: how many spans ``body`` holds (for messages).
            timeout: the caller's remaining seconds; caps this sender's ``timeout``.

        Raises:
            SendError: the write failed or ran out of time.
        """
        limit = self.timeout if timeout is None else max(0.0, min(self.timeout, timeout))
        deadline = _monotonic() + limit
        try:
            with self._lock:
                self._closing = False
                self._write(body, deadline)
        except _Timeout as exc:
            self._cut = exc.written > 0
            raise SendError(f'writing {span_count} spans to {self._describe()} timed '
                            f'out (the destination does not take data)',
                            retryable=exc.written == 0) from None
        except (OSError, ValueError) as exc:
            raise SendError(f'writing {span_count} spans to {self._describe()} '
                            f'failed: {exc}', retryable=False) from exc
        finally:
            # close() came while this write held the lock (it does not wait): close the
            # file now. Checked after the release, so a close() that found the lock
            # taken is always seen here.
            if self._closing:
                self.close()

    def _write(self, body: Body, deadline: float) -> None:
        if self._cut:
            body = b'\n' + body
            self._cut = False
        if self._path is not None:
            if self._fd < 0:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                   | getattr(os, 'O_CLOEXEC', 0), 0o644)
            _write_fd(self._fd, body, deadline)
            return
        stream: IO[Any] = self._stream if self._stream is not None else sys.stderr
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            fd = -1
        if fd >= 0:
            stream.flush()  # what the application wrote before goes first
            _write_fd(fd, body, deadline)
        elif _is_binary(stream):
            stream.write(bytes(body))  # a stream may keep what it is given
            stream.flush()
        else:
            stream.write(bytes(body).decode('utf-8', 'replace'))
            stream.flush()

    def close(self) -> None:
        """Close the file this sender opened; never waits for a write in progress."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_file()
            finally:
                self._lock.release()

    def _close_file(self) -> None:
        fd, self._fd = self._fd, -1
        self._closing = False
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _describe(self) -> str:
        if self._path is not None:
            return self._path
        return 'stderr' if self._stream is None else repr(self._stream)

    def __repr__(self) -> str:
        return f'FileSender({self._describe()})'


def _write_fd(fd: int, body: Body, deadline: float) -> None:
    """Write all of ``body`` to ``fd``; waits for room on a pipe only until ``deadline``."""
    view = memoryview(body)
    written = 0
    poller = None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
    while written < len(view):
        if poller is None:
            chunk = view[written:]
        else:
            remaining = deadline - _monotonic()
            if remaining <= 0.0 or not poller.poll(remaining * 1000.0):
                raise _Timeout(written)
            chunk = view[written:written + _CHUNK]
        written += os.write(fd, chunk)


def _is_binary(stream: Any) -> bool:
    if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return True
    if isinstance(stream, io.TextIOBase):
        return False
    return 'b' in getattr(stream, 'mode', '')
