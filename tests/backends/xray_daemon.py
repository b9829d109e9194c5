"""A stand-in for the AWS X-Ray daemon's UDP side, and a check of the documented format.

:class:`DaemonListener` binds a UDP socket on 127.0.0.1 and reads datagrams the way the
daemon does: one datagram is one message, the first line is the protocol header, the
rest one segment document. :func:`check_document` checks a document against the rules
of the AWS X-Ray segment document reference (required fields and their formats, the
subsegment fields, the ``http``, error and ``cause`` objects, annotation keys).

Reading needs no thread: once the reporter's ``flush()`` has returned, every datagram
was handed to the kernel, and on loopback a datagram is in the receiving socket's buffer
when ``sendto`` returns.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

HEADER = {'format': 'json', 'version': 1}

_HEX16 = re.compile(r'[0-9a-f]{16}')
_TRACE_ID = re.compile(r'1-[0-9a-f]{8}-[0-9a-f]{24}')
_NAME = re.compile(r'[\w\s.:/%&#=+\\@-]{1,200}')
_ANNOTATION_KEY = re.compile(r'[A-Za-z0-9_]+')
_TOP_LEVEL = {'name', 'id', 'trace_id', 'start_time', 'end_time', 'in_progress', 'parent_id',
              'type', 'namespace', 'service', 'user', 'origin', 'http', 'aws', 'error',
              'throttle', 'fault', 'cause', 'annotations', 'metadata', 'subsegments',
              'precursor_ids', 'sql'}
_REQUEST = {'method': str, 'url': str, 'user_agent': str, 'client_ip': str,
            'x_forwarded_for': bool, 'traced': bool}
_RESPONSE = {'status': int, 'content_length': int}
_EXCEPTION = {'id': str, 'message': str, 'type': str, 'remote': bool, 'truncated': int,
              'skipped': int, 'cause': str, 'stack': list}


class DaemonListener:
    """A UDP socket on 127.0.0.1 standing in for the daemon (use as a context manager)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.socket.bind(('127.0.0.1', 0))
        self.address = '127.0.0.1:%d' % self.socket.getsockname()[1]

    def receive(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """The next ``count`` datagrams; fails if they do not come within ``timeout``."""
        self.socket.settimeout(timeout)
        return [self.socket.recv(65535) for _ in range(count)]

    def pending(self) -> list[bytes]:
        """Datagrams already waiting, without blocking."""
        self.socket.setblocking(False)
        found = []
        try:
            while True:
                found.append(self.socket.recv(65535))
        except BlockingIOError:
            return found

    def documents(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Receive ``count`` datagrams, check each one's header and document, parse them."""
        return [parse_datagram(datagram) for datagram in self.receive(count, timeout)]

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> DaemonListener:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def parse_datagram(datagram: bytes) -> dict[str, Any]:
    """Split a datagram as the daemon does (at the first newline) and check both parts."""
    assert len(datagram) <= 64 * 1024, len(datagram)
    header, newline, body = datagram.partition(b'\n')
    assert newline, datagram[:100]
    assert json.loads(header) == HEADER, header
    document = json.loads(body)
    check_document(document)
    return document


def check_document(document: dict[str, Any]) -> None:
    """Assert that ``document`` follows the X-Ray segment document reference."""
    assert set(document) <= _TOP_LEVEL, set(document) - _TOP_LEVEL
    assert isinstance(document['name'], str) and _NAME.fullmatch(document['name']), document
    assert _HEX16.fullmatch(document['id']), document['id']
    assert _TRACE_ID.fullmatch(document['trace_id']), document['trace_id']
    assert isinstance(document['start_time'], float)
    assert 'in_progress' not in document
    assert isinstance(document['end_time'], float)
    assert document['end_time'] >= document['start_time']
    if document.get('type') == 'subsegment':
        assert _HEX16.fullmatch(document['parent_id']), document
    else:
        assert 'type' not in document and 'namespace' not in document, document
        if 'parent_id' in document:
            assert _HEX16.fullmatch(document['parent_id']), document
    if 'namespace' in document:
        assert document['namespace'] in ('aws', 'remote')
    for flag in ('error', 'throttle', 'fault'):
        if flag in document:
            assert document[flag] is True, document
    if 'http' in document:
        http = document['http']
        assert set(http) <= {'request', 'response'} and http, http
        for part, fields in (('request', _REQUEST), ('response', _RESPONSE)):
            for key, value in http.get(part, {}).items():
                assert key in fields and type(value) is fields[key], (part, key, value)
    if 'cause' in document:
        _check_cause(document['cause'])
    for key, value in document.get('annotations', {}).items():
        assert _ANNOTATION_KEY.fullmatch(key), key
        assert isinstance(value, (str, int, float, bool)), (key, value)
    for namespace, values in document.get('metadata', {}).items():
        assert not namespace.startswith('AWS.') and isinstance(values, dict), namespace


def _check_cause(cause: Any) -> None:
    if isinstance(cause, str):
        assert _HEX16.fullmatch(cause), cause
        return
    assert set(cause) <= {'working_directory', 'paths', 'exceptions'}, cause
    assert isinstance(cause.get('working_directory', ''), str)
    for exception in cause.get('exceptions', []):
        assert _HEX16.fullmatch(exception['id']), exception
        for key, value in exception.items():
            assert key in _EXCEPTION and type(value) is _EXCEPTION[key], (key, value)
        for frame in exception.get('stack', []):
            assert set(frame) <= {'path', 'line', 'label'}, frame
            assert isinstance(frame.get('path', ''), str)
            assert isinstance(frame.get('line', 0), int)
            assert isinstance(frame.get('label', ''), str)
