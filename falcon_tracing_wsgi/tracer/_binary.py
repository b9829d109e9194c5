"""The tracer's own compact encoding of a span context for ``Format.BINARY``.

OpenTracing leaves the binary format to each tracer, so this is only ever read by this
library (a message queue payload, a pickled job). Layout, big-endian::

    version   1 byte   (1)
    flags     1 byte   0x01 decision known, 0x02 sampled, 0x04 debug, 0x08 ids present,
                       0x10 128-bit trace id, 0x20 parent id present,
                       0x40 tracestate present, 0x80 extra fields present
    trace id  8 or 16 bytes   } when 0x08
    span id   8 bytes         }
    parent id 8 bytes         when 0x20
    baggage   u16 count, then per item: u16 length + UTF-8 key, u16 length + UTF-8 value
    tracestate u16 length + UTF-8                          when 0x40
    extra     u16 count, then items as for baggage         when 0x80

A sampled 128-bit context without baggage takes 28 bytes. Decoding is strict: a wrong
version, a truncated or over-long buffer, a zero id or bad UTF-8 gives ``None``.
"""

from __future__ import annotations

import struct
from typing import Optional, Union

from .context import SpanContext

_VERSION = 1
_DECIDED, _SAMPLED, _DEBUG, _IDS, _WIDE, _PARENT, _STATE, _EXTRA = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
_U16 = struct.Struct('>H')
_MAX_U16 = 0xFFFF


def encode(context: SpanContext) -> bytes:
    """Return the encoding of ``context``.

    Raises:
        ValueError: an id is not hex, or a string or item count does not fit in 16 bits.
    """
    flags = 0
    if context.sampled is not None:
        flags |= _DECIDED | (_SAMPLED if context.sampled else 0)
    if context.debug:
        flags |= _DEBUG
    body = bytearray()
    if context.trace_id is not None and context.span_id is not None:
        flags |= _IDS
        trace_id = bytes.fromhex(context.trace_id)
        span_id = bytes.fromhex(context.span_id)
        if len(trace_id) not in (8, 16) or len(span_id) != 8:
            raise ValueError('ids must be 64 or 128 bits wide')
        if len(trace_id) == 16:
            flags |= _WIDE
        body += trace_id
        body += span_id
        if context.parent_id is not None:
            parent_id = bytes.fromhex(context.parent_id)
            if len(parent_id) != 8:
                raise ValueError('the parent id must be 64 bits wide')
            flags |= _PARENT
            body += parent_id
    _put_items(body, context.baggage)
    if context.tracestate is not None:
        flags |= _STATE
        _put_str(body, context.tracestate)
    if context.extra:
        flags |= _EXTRA
        _put_items(body, context.extra)
    return bytes((_VERSION, flags)) + body


def decode(data: Union[bytes, bytearray, memoryview]) -> Optional[SpanContext]:
    """Return the context encoded in ``data``, or ``None`` when it is not a valid one."""
    try:
        return _Reader(data).context()
    except (IndexError, ValueError, UnicodeDecodeError, struct.error):
        return None


def _put_str(body: bytearray, text: str) -> None:
    raw = text.encode('utf-8')
    if len(raw) > _MAX_U16:
        raise ValueError('a string longer than 65535 bytes cannot be encoded')
    body += _U16.pack(len(raw))
    body += raw


def _put_items(body: bytearray, items: dict[str, str]) -> None:
    if len(items) > _MAX_U16:
        raise ValueError('more than 65535 items cannot be encoded')
    body += _U16.pack(len(items))
    for key, value in items.items():
        _put_str(body, key)
        _put_str(body, value)


class _Reader:
    __slots__ = ('_data', '_pos')

    def __init__(self, data: Union[bytes, bytearray, memoryview]) -> None:
        self._data = bytes(data)
        self._pos = 0

    def context(self) -> Optional[SpanContext]:
        data = self._data
        if len(data) < 2 or data[0] != _VERSION:
            return None
        flags = data[1]
        self._pos = 2
        trace_id = span_id = parent_id = None
        if flags & _IDS:
            trace_id = self._id(16 if flags & _WIDE else 8)
            span_id = self._id(8)
            if flags & _PARENT:
                parent_id = self._id(8)
        elif flags & (_WIDE | _PARENT):
            return None
        baggage = self._items()
        tracestate = self._str() if flags & _STATE else None
        extra = self._items() if flags & _EXTRA else None
        if self._pos != len(data):
            return None
        sampled = bool(flags & _SAMPLED) if flags & _DECIDED else None
        return SpanContext(trace_id, span_id, parent_id, sampled, bool(flags & _DEBUG),
                           baggage or None, tracestate, extra or None)

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise ValueError('truncated')
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def _id(self, size: int) -> str:
        raw = self._take(size)
        if not any(raw):
            raise ValueError('zero id')
        return raw.hex()

    def _str(self) -> str:
        (size,) = _U16.unpack(self._take(2))
        return self._take(size).decode('utf-8')

    def _items(self) -> dict[str, str]:
        (count,) = _U16.unpack(self._take(2))
        return {self._str(): self._str() for _ in range(count)}
