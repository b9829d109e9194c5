"""The file transport: encoded spans written to a stream or a file (the ``log`` reporter).

Each batch is written as JSON lines (one span object per line, each line ended), which
``jq``/``grep`` and log shippers read.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import IO, Any, Optional, Union

from .._types import SendError

__all__ = ['FileSender', 'frame_json_lines']


def frame_json_lines(encoded: list[str]) -> bytes:
    """Frame a batch as JSON lines: one span object per line, each line ended."""
    return ('\n'.join(encoded) + '\n').encode() if encoded else b''


class FileSender:
    """Writes spans as JSON lines to a stream or a file (the ``log`` reporter).

    Args:
        stream_or_path: a text or binary stream (written to and flushed, never closed),
            or a file path (opened for appending on the first batch, closed by
            :meth:`close`). ``None`` means ``sys.stderr``, looked up at each write so
            that a replaced ``sys.stderr`` is honoured.

    A failed write raises a non-retryable :class:`SendError`: the lines may have been
    partly written, and writing them again would duplicate spans.
    """

    def __init__(self, stream_or_path: Union[None, str, os.PathLike[str], IO[Any]] = None
                 ) -> None:
        self._path: Optional[str] = None
        self._stream: Optional[IO[Any]] = None
        self._owned: Optional[IO[bytes]] = None
        if stream_or_path is None:
            pass
        elif isinstance(stream_or_path, (str, os.PathLike)):
            self._path = os.fspath(stream_or_path)
        elif hasattr(stream_or_path, 'write'):
            self._stream = stream_or_path
        else:
            raise ValueError(f'FileSender needs a stream, a path or None, '
                             f'got {stream_or_path!r}')
        self._lock = threading.Lock()

    frame = staticmethod(frame_json_lines)

    def send(self, body: bytes, span_count: int, timeout: Optional[float] = None) -> None:
        """Write one framed batch (JSON lines) and flush.

        Raises:
            SendError: the write failed (never retryable).
        """
        try:
            with self._lock:
                if self._path is not None:
                    if self._owned is None:
                        self._owned = open(self._path, 'ab')
                    stream: IO[Any] = self._owned
                else:
                    stream = self._stream if self._stream is not None else sys.stderr
                if _is_binary(stream):
                    stream.write(body)
                else:
                    stream.write(body.decode('utf-8', 'replace'))
                stream.flush()
        except (OSError, ValueError) as exc:
            raise SendError(f'writing {span_count} spans to {self._describe()} failed: {exc}',
                            retryable=False) from exc

    def close(self) -> None:
        """Close the file this sender opened; streams are only flushed."""
        with self._lock:
            owned, self._owned = self._owned, None
            try:
                if owned is not None:
                    owned.close()
                elif self._stream is not None:
                    self._stream.flush()
            except (OSError, ValueError):
                pass

    def _describe(self) -> str:
        if self._path is not None:
            return self._path
        return 'sys.stderr' if self._stream is None else repr(self._stream)

    def __repr__(self) -> str:
        return f'FileSender({self._describe()})'


def _is_binary(stream: Any) -> bool:
    if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return True
    if isinstance(stream, io.TextIOBase):
        return False
    return 'b' in getattr(stream, 'mode', '')
