"""Joining a batch's pieces into one body, with the body as the only large buffer.

Why: under load a batch is up to ``max_batch_bytes`` (4 MiB). Built the obvious way,
``('[' + ','.join(pieces) + ']').encode()`` makes the body three times over (the joined
text, the text with its brackets, the bytes), each copy as large as the batch and the
previous one still alive while the next is made. Blocks that large come from ``mmap`` or
the top of glibc's heap and go back to the kernel when freed, so every body paid its
size again in page faults: measured on ``bench_reporter.py``'s spans (~500 bytes each),
0.76 to 0.89 us per span at 8,000 spans per body against 0.09 us at 1,000, which was
most of what the pipeline cost per span beyond encoding. Joined here, 0.10 us per span
at both sizes.

How: text pieces are joined and encoded ``CHUNK`` at a time (short-lived buffers of a few
tens of kB), the head and tail go into the first and last chunk, and the chunks are
joined once. Byte pieces (protobuf) are joined once behind their prefix. A batch of at
most ``CHUNK`` pieces is joined the plain way, which is as fast for small bodies.

Reused storage (:class:`BodyBuffer`): even joined once, a new body per batch is a new
block of up to 4 MiB, which glibc takes from the kernel and gives back after the send
(its heap top is trimmed), so the next body pays its pages again: about 30,000 page
faults per 200,000 spans in ``bench_reporter.py``'s first run, with the kernel zeroing
every page. Given a ``BodyBuffer``, a large body is written chunk by chunk into storage
kept from one batch to the next and handed to the sender as a ``memoryview``: about
4,000 faults, and 0.1 to 0.8 us less CPU per span, about 0.5 in most of twelve paired
runs of that benchmark (README, issue 12). The pipeline passes one only to a sender
that declares ``borrows_body`` (it uses the body only while ``send()`` runs: HTTP and
file), since the next body overwrites it.

Pure functions and one storage object, no format knowledge: the formats and the
pipeline's default framing share them.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union, overload

__all__ = ['join_text', 'join_bytes', 'BodyBuffer', 'Body', 'CHUNK']

#: Pieces joined and encoded at a time (~64 kB of ~500-byte spans).
CHUNK = 128

#: A framed body: bytes, or a view of a BodyBuffer's storage (valid until its next use).
Body = Union[bytes, memoryview]


class BodyBuffer:
    """Storage reused for the large bodies of one pipeline, one body at a time.

    A body written here is valid until the next one is: use it only where one send at a
    time happens (the pipeline frames and sends under its send lock).

    Memory: the storage is a quarter larger than the largest body it was made for (so
    the next, slightly larger body fits), about one ``max_batch_bytes`` body and a
    quarter at most. It is let go as soon as the load falls: a body of at most ``CHUNK`` pieces,
    or one that needs less than a quarter of the storage, is made the plain way and
    releases it, and so does :meth:`release` (the pipeline calls it when a round finds
    nothing to send, in a forked child, and on close). A process that is not busy holds
    none.
    """

    __slots__ = ('_data',)

    def __init__(self) -> None:
        self._data: Optional[bytearray] = None

    @property
    def capacity(self) -> int:
        """Bytes of storage held now (0 when none)."""
        return 0 if self._data is None else len(self._data)

    def release(self) -> None:
        """Let the storage go (a body handed out earlier stays valid while referenced)."""
        self._data = None

    def _storage(self, size: int) -> Optional[memoryview]:
        """A view of at least ``size`` bytes of storage, or None when the body should be
        made the plain way (it is small next to the storage: the load fell)."""
        data = self._data
        if data is not None and size <= len(data):
            if size >= len(data) >> 2:
                return memoryview(data)
            self._data = None
            return None
        # NOTE: new storage rather than a resize: a body handed out earlier may still be
        # referenced (a bytearray with exports cannot be resized), and is left intact.
        data = self._data = bytearray(size + (size >> 2))
        return memoryview(data)

    def _grow(self, view: memoryview, written: int, size: int) -> memoryview:
        """New storage for ``size`` bytes (a body larger than its estimate), holding the
        ``written`` bytes of ``view`` already made."""
        data = self._data = bytearray(size + (size >> 2))
        grown = memoryview(data)
        grown[:written] = view[:written]
        return grown

    def join_text(self, pieces: Sequence[str], head: str, separator: str, tail: str
                  ) -> Optional[memoryview]:
        """``join_text(pieces, head, separator, tail)`` written into the storage; None
        when the body should be made the plain way (small next to the storage).

        PERF: the storage is sized from the first chunk (its bytes per piece times the
        pieces), not by adding up every piece's length first (a pass over thousands of
        pieces: about 50 ns each), and grown if a later chunk is larger.
        """
        count = len(pieces)
        first = head.encode()
        between = separator.encode()
        last = tail.encode()
        join = separator.join
        chunk = join(pieces[:CHUNK]).encode()
        estimate = (len(first) + len(last)
                    + (len(chunk) + len(between)) * count // min(count, CHUNK))
        view = self._storage(estimate)
        if view is None:
            return None
        end = len(first)
        view[:end] = first
        start = 0
        while True:
            position = end
            end += len(chunk)
            if end + len(last) > len(view):
                left = count - start  # pieces from this chunk on, at this chunk's size
                view = self._grow(view, position, position + len(last)
                                  + (len(chunk) + len(between)) * left // min(left, CHUNK))
            view[position:end] = chunk
            start += CHUNK
            if start >= count:
                break
            position = end
            end += len(between)
            view[position:end] = between
            chunk = join(pieces[start:start + CHUNK]).encode()
        position = end
        end += len(last)
        view[position:end] = last
        return view[:end]

    def join_bytes(self, prefix: bytes, pieces: Sequence[bytes],
                   size: Optional[int] = None) -> Optional[memoryview]:
        """``join_bytes(prefix, pieces)`` written into the storage; None when the body
        should be made the plain way (small next to the storage). ``size``: the body's
        size when the caller knows it (the OTLP framing adds the pieces' lengths up for
        its headers anyway)."""
        if size is None:
            size = len(prefix) + sum(map(len, pieces))
        view = self._storage(size)
        if view is None:
            return None
        join = b''.join
        end = len(prefix)
        view[:end] = prefix
        for start in range(0, len(pieces), CHUNK):
            chunk = join(pieces[start:start + CHUNK])
            position = end
            end += len(chunk)
            view[position:end] = chunk
        return view[:size]


@overload
def join_text(pieces: Sequence[str], head: str, separator: str, tail: str) -> bytes: ...
@overload
def join_text(pieces: Sequence[str], head: str, separator: str, tail: str,
              buffer: Optional[BodyBuffer]) -> Body: ...


def join_text(pieces: Sequence[str], head: str, separator: str, tail: str,
              buffer: Optional[BodyBuffer] = None) -> Body:
    """``(head + separator.join(pieces) + tail)`` as UTF-8, without large copies; into
    ``buffer``'s storage when one is given and the body is large (see
    :class:`BodyBuffer`)."""
    count = len(pieces)
    if count <= CHUNK:
        if buffer is not None:
            buffer.release()  # a small batch: the load fell
        return (head + separator.join(pieces) + tail).encode()
    if buffer is not None:
        body = buffer.join_text(pieces, head, separator, tail)
        if body is not None:
            return body
    join = separator.join
    chunks = [join(pieces[start:start + CHUNK]).encode() for start in range(0, count, CHUNK)]
    chunks[0] = head.encode() + chunks[0]
    chunks[-1] += tail.encode()
    return separator.encode().join(chunks)


@overload
def join_bytes(prefix: bytes, pieces: Sequence[bytes]) -> bytes: ...
@overload
def join_bytes(prefix: bytes, pieces: Sequence[bytes], buffer: Optional[BodyBuffer],
               size: Optional[int] = None) -> Body: ...


def join_bytes(prefix: bytes, pieces: Sequence[bytes],
               buffer: Optional[BodyBuffer] = None, size: Optional[int] = None) -> Body:
    """``prefix + b''.join(pieces)``, joined once; into ``buffer``'s storage when one is
    given and the body is large (see :class:`BodyBuffer`; ``size``, the body's size, if
    the caller knows it)."""
    if buffer is not None:
        if len(pieces) <= CHUNK:
            buffer.release()  # a small batch: the load fell
        else:
            body = buffer.join_bytes(prefix, pieces, size)
            if body is not None:
                return body
    return b''.join([prefix, *pieces])
