"""The HTTP transport: a framed batch POSTed to a collector (Zipkin's ``/api/v2/spans``,
OTLP/HTTP's ``/v1/traces``).

A sender delivers the body of one batch, framed by the format's encoder (for Zipkin a
JSON array ``[a,b,c]``, the body of ``POST /api/v2/spans``); see
:mod:`falcon_tracing_wsgi.export` for the contract:

``send(body, span_count, timeout=None)``
    Delivers the bytes or raises :class:`~falcon_tracing_wsgi._types.SendError` saying
    whether trying again may help, and whether the body was refused for its size
    (413, ``too_large``: the pipeline then splits the batch). ``timeout`` (seconds) is
    the caller's remaining time; the sender never blocks longer than that.

:class:`HttpSender` design:

* Standard library only (:mod:`http.client`): the reporter's own HTTP traffic must never
  be traced, and a tracing integration for ``requests`` or ``urllib3`` would see it. It
  also sends ``b3: 0`` (B3-E6) so that a tracing proxy in front of the collector does not
  trace the upload either (and never ``X-B3-Sampled``).
* One keep-alive connection, reused batch after batch. Before reuse, the socket is
  polled: a peer that closed an idle connection makes it readable, and the sender
  reconnects instead of posting into a dead socket. A POST is never repeated on its own
  (it is not idempotent); the reporter decides about retries. After a fork the child
  opens its own connection (the parent's socket is never used by two processes).
* Timeouts, both enforced: ``connect_timeout`` bounds the TCP connect and, for https, the
  TLS handshake. ``read_timeout`` bounds the **whole exchange** that follows - sending
  the body and receiving the complete response - as one deadline, not per socket read
  (each read's socket timeout is set to the time left), so a collector that answers a
  byte at a time cannot stretch it. The caller's ``timeout`` caps both.
* Status codes: 2xx is success. 408 and 429 and every 5xx are retryable, like timeouts
  and connection errors. 413 (the body is too large) is not retryable as it is, but
  says ``too_large``: the halves of the batch may pass. Any other status (4xx: the
  collector rejected the payload; 3xx: the URL is wrong) is not: sending the same bytes
  again would fail the same way.
  ``retry_statuses`` replaces the retryable set (OTLP/HTTP: only 429, 502, 503 and 504).
* Other protocols (OTLP/HTTP) plug in through options, so one sender serves every
  format: ``content_type`` (the format's media type), ``retry_after`` (a retryable
  answer's ``Retry-After``, seconds or an HTTP date, is passed on as
  :attr:`SendError.retry_after`, at most 60 s) and ``parse_response`` (reads a 2xx
  answer's body and returns a :class:`~falcon_tracing_wsgi._types.PartialSuccess` when
  the collector kept only part of the batch; :meth:`HttpSender.send` returns it).
* https uses :func:`ssl.create_default_context` (certificates verified, system CAs)
  unless an ``ssl_context`` is given; certificate errors are not retryable. There is no
  proxy support, and credentials go in ``headers`` (``Authorization``), never in the URL.
* A sender is used by one thread at a time (the reporter serialises its sends);
  :meth:`HttpSender.close` may be called from another thread to abort a send.
"""

from __future__ import annotations

import http.client
import io
import os
import select
import socket
import ssl
from collections.abc import Collection
from time import monotonic as _monotonic
from time import time as _time
from typing import IO, Any, Callable, Optional
from urllib.parse import urlsplit

from .._types import PartialSuccess, SendError
from ._framing import Body, join_text

__all__ = ['HttpSender', 'frame_json_array', 'resolver_host', 'SendError']

_DEFAULT_PATH = '/api/v2/spans'
_RESERVED_HEADERS = frozenset(('content-type', 'content-length', 'content-encoding',
                               'transfer-encoding', 'host', 'b3'))
_RETRYABLE_4XX = frozenset((408, 429))
_MAX_RESPONSE_BYTES = 64 * 1024  # more than this and the connection is not reused
_SHOWN_BODY = 200
#: The longest Retry-After honoured (seconds): the worker waits that long at most, while
#: the queue stays bounded; close() cuts the wait short.
MAX_RETRY_AFTER = 60.0


def _retry_after(value: Optional[str]) -> Optional[float]:
    """A ``Retry-After`` header as seconds from now (0 .. MAX_RETRY_AFTER), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        from email.utils import parsedate_to_datetime  # rare: only when a date is sent
        try:
            seconds = parsedate_to_datetime(value).timestamp() - _time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def frame_json_array(encoded: list[str]) -> bytes:
    """Frame a batch as a JSON array: the body of ``POST /api/v2/spans``."""
    return join_text(encoded, '[', ',', ']')


class _DeadlineReader(io.RawIOBase):
    """A socket's read side that gives up at an absolute deadline (not per read)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - _monotonic()
        if remaining <= 0.0:
            raise socket.timeout('timed out waiting for the response')
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What :class:`http.client.HTTPResponse` needs from a socket: ``makefile``."""

    __slots__ = ('_sock', '_deadline')

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> IO[bytes]:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def resolver_host(host: Any) -> Any:
    """A host name as the resolver should get it: an ASCII name as bytes.

    PERF: a str host makes the resolver (``getaddrinfo``, ``gethostbyname``) run the
    'idna' codec, which imports ``encodings.idna`` and ``stringprep`` (~110 kB in the
    process) to encode an ASCII name unchanged; bytes skip that. A non-ASCII name still
    gets the codec. (CPython takes bytes here; typeshed only declares str.)
    """
    if isinstance(host, str) and host.isascii():
        return host.encode('ascii')
    return host


def _create_connection(address: tuple[Any, int], *args: Any) -> socket.socket:
    """:func:`socket.create_connection`, with the host name from :func:`resolver_host`."""
    host, port = address
    return socket.create_connection((resolver_host(host), port), *args)


class _DeadlineMixin:
    """Makes :meth:`getresponse` read the response under :attr:`deadline`."""

    deadline = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # PERF: see _create_connection. http.client connects through this (private,
        # set in its __init__) attribute since 3.4; should it ever stop, only the
        # saving is lost, never the connection.
        self._create_connection = _create_connection

    # http.client builds the response with ``self.response_class(self.sock, ...)``;
    # defined as a method, this receives the connection and can pass the deadline on.
    def response_class(self, sock: socket.socket, debuglevel: int = 0,
                       method: Optional[str] = None,
                       url: Optional[str] = None) -> http.client.HTTPResponse:
        reader: Any = _DeadlineSocket(sock, self.deadline)  # all HTTPResponse uses: makefile
        return http.client.HTTPResponse(reader, debuglevel, method, url)


# The type checker sees a method where http.client declares a class; both are callables
# that return a response, which is all http.client relies on.
class _HTTPConnection(_DeadlineMixin, http.client.HTTPConnection):  # type: ignore[misc]
    pass


class _HTTPSConnection(_DeadlineMixin, http.client.HTTPSConnection):  # type: ignore[misc]
    pass


def _peer_closed(sock: socket.socket) -> bool:
    """Whether an idle keep-alive socket was closed (or spoken to) by the peer.

    A closed connection makes the socket readable (end of file). Over TLS, a readable
    socket may instead hold protocol records such as TLS 1.3 session tickets, so a
    non-blocking read decides: "want read" means the connection is alive and idle.
    """
    try:
        readable, _, _ = select.select([sock], [], [], 0.0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    if isinstance(sock, ssl.SSLSocket):
        try:
            sock.setblocking(False)
            sock.recv(1)  # data or end of file: either way the stream is not reusable
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
    return True


class HttpSender:
    """Posts batches to a collector: Zipkin v2 (``POST /api/v2/spans``, JSON) by default,
    OTLP/HTTP with the OTLP options (see the module docstring).

    Args:
        url: the collector endpoint, ``http(s)://host[:port][/path]``; an empty path
            means ``/api/v2/spans``.
        connect_timeout: seconds for the TCP connect (and the TLS handshake).
        read_timeout: seconds for sending the body and receiving the whole response.
        headers: extra request headers, for example ``{'Authorization': 'Bearer ...'}``.
            The headers the sender owns (``Content-Type``, ``Content-Length``,
            ``Content-Encoding``, ``Host``, ``Transfer-Encoding``, ``b3``, ``X-B3-*``)
            cannot be set.
        gzip: compress bodies (``Content-Encoding: gzip``, fast level 1).
        ssl_context: the TLS settings for https; default :func:`ssl.create_default_context`.
        content_type: the ``Content-Type`` of the bodies.
        retry_statuses: the HTTP statuses worth retrying; default 408, 429 and every 5xx.
        retry_after: pass a retryable answer's ``Retry-After`` on to the reporter.
        parse_response: reads the body of a 2xx answer; returns a
            :class:`~falcon_tracing_wsgi._types.PartialSuccess` or ``None``.

    Raises:
        ValueError: the URL, a timeout or a header is invalid; the message says which.
    """

    #: send() uses the body only until it returns and takes any bytes-like object, so
    #: the pipeline may hand it a view of storage it reuses (see export._framing).
    borrows_body = True

    def __init__(self, url: str, *, connect_timeout: float = 2.0, read_timeout: float = 5.0,
                 headers: Optional[dict[str, str]] = None, gzip: bool = False,
                 ssl_context: Optional[ssl.SSLContext] = None,
                 content_type: str = 'application/json',
                 retry_statuses: Optional[Collection[int]] = None, retry_after: bool = False,
                 parse_response: Optional[Callable[[bytes], Optional[PartialSuccess]]] = None
                 ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ValueError(f'HttpSender url must look like http://host:9411/api/v2/spans, '
                             f'got {url!r}')
        if parts.username is not None or parts.password is not None:
            raise ValueError('HttpSender url must not contain credentials; pass them as '
                             "headers={'Authorization': ...}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f'HttpSender url has an invalid port: {url!r}') from None
        for option, seconds in (('connect_timeout', connect_timeout),
                                ('read_timeout', read_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                    or not 0 < seconds < float('inf'):
                raise ValueError(f'HttpSender {option} must be a positive number of seconds, '
                                 f'got {seconds!r}')
        from .. import __version__  # here, not at the top: the package imports us
        self._headers = {'Content-Type': content_type, 'b3': '0',
                         'User-Agent': f'falcon-tracing-wsgi/{__version__}'}
        for name, value in (headers or {}).items():
            if not isinstance(name, str) or not isinstance(value, str) \
                    or not name or any(c in name + value for c in '\r\n\0') or ':' in name:
                raise ValueError(f'HttpSender header {name!r} is not a valid header')
            if name.lower() in _RESERVED_HEADERS or name.lower().startswith('x-b3-'):
                raise ValueError(f'HttpSender header {name!r} is set by the sender itself')
            self._headers[name] = value
        if gzip:
            self._headers['Content-Encoding'] = 'gzip'
        self.url = url
        self._https = parts.scheme == 'https'
        self._host = parts.hostname
        self._port = port
        path = parts.path or _DEFAULT_PATH
        self._target = path + ('?' + parts.query if parts.query else '')
        # Messages name the endpoint without its query (which could carry a token).
        self._where = f'{parts.scheme}://{parts.netloc}{path}'
        self._connect_timeout = float(connect_timeout)
        self._read_timeout = float(read_timeout)
        self._gzip = bool(gzip)
        self._ssl_context = ssl_context
        self._conn: Optional[http.client.HTTPConnection] = None
        self._conn_pid = 0
        self._closed = False
        self._retry_statuses = None if retry_statuses is None else frozenset(retry_statuses)
        self._retry_after = bool(retry_after)
        self._parse_response = parse_response

    @property
    def destination(self) -> str:
        """The endpoint, for log lines (without its query, which could hold a token)."""
        return self._where

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    @property
    def read_timeout(self) -> float:
        return self._read_timeout

    def send(self, body: Body, span_count: int,
             timeout: Optional[float] = None) -> Optional[PartialSuccess]:
        """POST one framed batch.

        Args:
            body: the framed batch (framed by the format's encoder): bytes, or a view
                of the pipeline's reused storage, read only during this call.
            span_count: how many spans ``body`` holds (for messages).
            timeout: the caller's remaining time in seconds; caps both timeouts.

        Returns:
            ``None``, or what ``parse_response`` found in the answer (a partial success).

        Raises:
            SendError: the batch was not accepted; ``retryable`` says whether to try again
                and ``retry_after`` after how long, if the collector said so.
        """
        if self._closed:
            raise SendError(f'POST {self._where}: the sender is closed', retryable=False)
        start = _monotonic()
        limit = None if timeout is None else start + max(timeout, 0.0)
        if self._gzip:
            # PERF: gzip (~65 kB per process) is imported only when compression is on.
            import gzip as _gzip
            body = _gzip.compress(body, compresslevel=1, mtime=0)
        conn = self._connection()
        try:
            if conn.sock is None:
                connect_timeout = self._connect_timeout
                if limit is not None:
                    connect_timeout = min(connect_timeout, limit - _monotonic())
                    if connect_timeout <= 0.0:
                        raise socket.timeout('no time left to connect')
                conn.timeout = connect_timeout
                conn.connect()
            deadline = _monotonic() + self._read_timeout
            if limit is not None and limit < deadline:
                deadline = limit
            remaining = deadline - _monotonic()
            if remaining <= 0.0:
                raise socket.timeout('no time left to send')
            # Since Python 3.5 a socket timeout bounds a whole sendall(), not each chunk.
            conn.sock.settimeout(remaining)
            conn.deadline = deadline  # type: ignore[attr-defined]
            conn.request('POST', self._target, body, self._headers)
            response = conn.getresponse()
            data = response.read(_MAX_RESPONSE_BYTES)
            status = response.status
            wait = response.getheader('Retry-After') if self._retry_after else None
            if not response.isclosed():  # an oversized answer: do not reuse the stream
                self._drop(conn)
        except ssl.SSLCertVerificationError as exc:
            self._drop(conn)
            raise SendError(f'POST {self._where}: TLS certificate rejected: {exc}',
                            retryable=False) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: http.client on a socket closed under it by close().
            self._drop(conn)
            what = 'timed out' if isinstance(exc, socket.timeout) else \
                f'{type(exc).__name__}: {exc}'
            raise SendError(f'POST {self._where} ({span_count} spans): {what}',
                            retryable=True) from exc
        if 200 <= status < 300:
            if self._parse_response is None or not data:
                return None
            try:
                return self._parse_response(data)
            except Exception:  # an answer we cannot read: the batch was accepted anyway
                return None
        shown = data[:_SHOWN_BODY].decode('utf-8', 'replace').strip()
        if self._retry_statuses is None:
            retryable = status >= 500 or status in _RETRYABLE_4XX
        else:
            retryable = status in self._retry_statuses
        raise SendError(f'POST {self._where} ({span_count} spans): HTTP {status}'
                        + (f': {shown}' if shown else ''), retryable=retryable,
                        retry_after=_retry_after(wait) if retryable else None,
                        too_large=status == 413)

    def close(self) -> None:
        """Close the connection; a send in progress on another thread fails (retryable)."""
        self._closed = True
        conn = self._conn
        self._conn = None
        if conn is not None:
            sock = conn.sock
            if sock is not None:
                try:  # shutdown() wakes a thread blocked reading; close() alone may not
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        conn = self._conn
        pid = os.getpid()
        if conn is not None and self._conn_pid != pid:
            # Forked: the socket is shared with the parent; closing our copy of the file
            # descriptor does not end the parent's connection.
            conn.close()
            conn = None
        if conn is not None and conn.sock is not None and _peer_closed(conn.sock):
            conn.close()
        if conn is None:
            if self._https:
                context = self._ssl_context or ssl.create_default_context()
                self._ssl_context = context
                conn = _HTTPSConnection(self._host, self._port, context=context)
            else:
                conn = _HTTPConnection(self._host, self._port)
            self._conn = conn
            self._conn_pid = pid
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()

    def __repr__(self) -> str:
        return f'HttpSender({self._where!r}, gzip={self._gzip})'
