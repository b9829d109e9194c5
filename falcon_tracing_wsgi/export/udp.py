"""The UDP sender: segment documents to the AWS X-Ray daemon, one datagram each.

The daemon listens on UDP (``127.0.0.1:2000`` unless ``AWS_XRAY_DAEMON_ADDRESS`` says
otherwise) and takes exactly one document per datagram, so this sender does for the
batch reporter what :class:`~falcon_tracing_wsgi.export.http.HttpSender` does for
Zipkin, with a different framing:

``frame(encoded) -> bytes``
    The reporter hands over a batch of datagram texts (see
    :class:`~falcon_tracing_wsgi.export.xray.SegmentEncoder`) and sends one body.
    The texts are joined with NUL bytes, which ASCII-escaped JSON never contains (a NUL
    inside a string is written ``\\u0000``), so :meth:`UdpSender.send` can split the body
    back into datagrams without any ambiguity.
``send(body, span_count, timeout=None)``
    One ``sendto`` per datagram.

Decisions:

* **Fire and forget**, like the X-Ray SDKs' emitters: UDP gives no delivery report, so
  "sent" means "handed to the kernel". A daemon that is not running loses the spans
  silently; that is the protocol's price for never slowing the application down.
* **No I/O before the first send.** The address is parsed at construction; the host is
  resolved and the socket opened on the first send in each process (a forked child opens
  its own), and again after a send error, so a daemon that moves (a DNS name in ECS or
  Kubernetes) is found again.
* **Bounded.** The socket is blocking with a timeout (``timeout``, capped by the
  reporter's remaining time), so a full send buffer cannot hold the worker thread.
* **Errors** raise :class:`~falcon_tracing_wsgi._types.SendError`. A timeout, a full
  buffer (``ENOBUFS``/``EAGAIN``) or a failed name lookup may pass, so they are
  retryable; anything else (a datagram too large, an unreachable network) is not. A
  retry sends the whole batch again, so a datagram may arrive twice; X-Ray keeps one
  document per segment id, so a repeat only overwrites the same document.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from typing import Any, Optional

from .._sync import after_fork_in_child
from .._types import SendError

__all__ = ['UdpSender', 'DEFAULT_DAEMON_ADDRESS', 'split_address']

#: Where the X-Ray SDKs send segments by default.
DEFAULT_DAEMON_ADDRESS = '127.0.0.1:2000'
_SEPARATOR = b'\x00'
_RETRYABLE_ERRNOS = frozenset((errno.ENOBUFS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[ipv6]:port``) as ``(host, port)``.

    Raises:
        ValueError: the address has no valid port or no host.
    """
    text = address.strip()
    if text.startswith('['):
        host, sep, port = text[1:].partition(']:')
    else:
        host, sep, port = text.rpartition(':')
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'an X-Ray daemon address must be host:port such as '
                         f'127.0.0.1:2000, got {address!r}')
    return host, int(port)


class UdpSender:
    """Sends each datagram of a batch to the X-Ray daemon over UDP.

    Args:
        address: the daemon's UDP ``host:port`` (``[ipv6]:port`` for IPv6).
        timeout: the most seconds one ``sendto`` may block.

    Raises:
        ValueError: a bad address or timeout; the message says what is expected.
    """

    def __init__(self, address: str = DEFAULT_DAEMON_ADDRESS, *, timeout: float = 1.0) -> None:
        self.host, self.port = split_address(address)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not 0 < timeout < float('inf'):
            raise ValueError(f'UdpSender timeout must be a number > 0, got {timeout!r}')
        self.timeout = float(timeout)
        self._lock = threading.Lock()  # held only to swap the socket, never during I/O
        self._socket: Optional[socket.socket] = None
        self._target: Any = None
        self._pid = 0
        after_fork_in_child(self._after_fork_in_child)

    @property
    def destination(self) -> str:
        """Where the spans go, for log lines: ``udp://host:port``."""
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'udp://{host}:{self.port}'

    def frame(self, encoded: list[str]) -> bytes:
        """Join datagram texts (ASCII) with NUL bytes, for :meth:`send` to split."""
        return _SEPARATOR.join(text.encode('ascii') for text in encoded)

    def send(self, body: bytes, span_count: int, timeout: Optional[float] = None) -> None:
        """Send every datagram in ``body``.

        Args:
            body: datagrams joined by :meth:`frame`.
            span_count: how many spans the body holds (for messages).
            timeout: the caller's remaining seconds; caps this sender's ``timeout``.

        Raises:
            SendError: a datagram could not be handed to the kernel.
        """
        limit = self.timeout if timeout is None else max(0.001, min(self.timeout, timeout))
        sock, target = self._open()
        sock.settimeout(limit)
        for datagram in body.split(_SEPARATOR):
            if not datagram:
                continue
            try:
                sock.sendto(datagram, target)
            except socket.timeout:
                raise SendError(f'sending {span_count} spans to the X-Ray daemon at '
                                f'{self.host}:{self.port} timed out', retryable=True) from None
            except OSError as exc:
                self._reset()
                raise SendError(f'sending {span_count} spans to the X-Ray daemon at '
                                f'{self.host}:{self.port} failed: {exc}',
                                retryable=exc.errno in _RETRYABLE_ERRNOS) from None

    def _open(self) -> tuple[socket.socket, Any]:
        pid = os.getpid()
        with self._lock:
            sock, target = self._socket, self._target
            if sock is not None and self._pid == pid:
                return sock, target
        # A new process (or the first send, or after an error): resolve and open. The
        # lock is not held meanwhile: a name lookup can take seconds, and close() must
        # never wait for one.
        try:
            family, kind, protocol, _, target = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise SendError(f'cannot resolve the X-Ray daemon address {self.host}: '
                            f'{exc}', retryable=True) from None
        try:
            sock = socket.socket(family, kind, protocol)
        except OSError as exc:
            raise SendError(f'cannot open a UDP socket: {exc}', retryable=True) from None
        with self._lock:
            # A forked child closes its copy of the parent's socket (the parent keeps its
            # own); sends are serialised by the reporter, so no other socket came meanwhile.
            old, self._socket, self._target, self._pid = self._socket, sock, target, pid
        if old is not None:
            old.close()
        return sock, target

    def _reset(self) -> None:
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        self._reset()

    def __repr__(self) -> str:
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'UdpSender({host}:{self.port})'
