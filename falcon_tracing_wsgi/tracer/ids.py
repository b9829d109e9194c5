"""Random span and trace ids, as lower-case hex strings of their exact wire width.

Design:

* Ids are drawn with the module-level :func:`random.getrandbits`, **one call per id**.
  CPython re-seeds that shared generator in a forked child (``random`` registers
  ``os.register_at_fork(after_in_child=...)``), so gunicorn workers forked from one master
  never draw the same sequence. A private ``random.Random`` seeded once (the
  basictracer approach) would repeat the parent's ids in every child.
* The ids do not need to be unpredictable, only unique with high probability, so the
  Mersenne Twister is enough and much cheaper than ``os.urandom`` or ``secrets``.
* An id of zero is invalid in B3, W3C and Jaeger alike, so a zero draw is redrawn
  (probability 2**-64 per draw; the loop exists for correctness, not for speed).
* Ids are formatted once as lower-case hex of their exact width (what ``'%016x'`` /
  ``'%032x'`` give): every wire format and the Zipkin encoders carry hex, so the tracer
  never converts them back (see :mod:`falcon_tracing_wsgi.tracer.context`).

:class:`RandomIdGenerator` bundles the two functions the tracer needs; a test can hand
the tracer any object with the same two methods to get reproducible ids.
:class:`XRayIdGenerator` makes 128-bit trace ids whose first 32 bits are the epoch
seconds, as AWS X-Ray's trace ids are (``1-{8 hex seconds}-{24 hex random}``).

**W3C random flag.** Both generators say ``random_trace_ids = True``, and the tracer then
sets ``SpanContext.random_trace_id`` (W3C Trace Context Level 2's ``0x02`` flag) on the
traces they start. The flag promises only that the *right-most 7 bytes* of the 16-byte
W3C trace id are uniformly random, which holds for all of them:

* a random 128-bit id: all 16 bytes are random;
* a random 64-bit id, written left-padded with zeros in ``traceparent``: the right-most
  8 bytes are random, which is exactly the case the spec's "shorter identifiers" section
  allows to keep the flag;
* an X-Ray id: only the *left-most* 4 bytes are the clock; the right-most 12 are random.

(The zero redraw removes one value out of 2**64, which does not make the low 56 bits
measurably non-uniform.) A generator without the attribute, such as a test's sequential
ids, is assumed not random: the flag stays unset.

**Other generators are checked.** The tracer wraps any other generator in
:class:`CheckedIdGenerator`: an id that is not lower-case hex of its width (``'ABC'``,
an ``int``, a 20-character text) is replaced by a random one, counted and logged once,
so a context never carries an id that a collector would refuse (see
:mod:`falcon_tracing_wsgi.tracer.context`).
"""

from __future__ import annotations

import logging
from random import getrandbits as _getrandbits
from typing import Any, Callable
from time import time as _time

from .context import valid_span_id, valid_trace_id

__all__ = ['new_span_id', 'new_trace_id_64', 'new_trace_id_128', 'new_xray_trace_id',
           'new_trace_ids_64', 'new_trace_ids_128', 'RandomIdGenerator', 'XRayIdGenerator',
           'CheckedIdGenerator']

_log = logging.getLogger(__name__)

_ZERO_16 = '0' * 16


def new_span_id() -> str:
    """Return a random non-zero 64-bit span id as 16 lower-case hex characters."""
    bits = _getrandbits(64)
    while not bits:
        bits = _getrandbits(64)
    # PERF: to_bytes().hex() gives the same string as '%016x' % bits in about 60% of the
    # time (CPython 3.11: 110 ns against 183 ns including the draw).
    return bits.to_bytes(8, 'big').hex()


def new_trace_id_64() -> str:
    """Return a random non-zero 64-bit trace id as 16 lower-case hex characters."""
    bits = _getrandbits(64)
    while not bits:
        bits = _getrandbits(64)
    return bits.to_bytes(8, 'big').hex()


def new_trace_id_128() -> str:
    """Return a random non-zero 128-bit trace id as 32 lower-case hex characters."""
    bits = _getrandbits(128)
    while not bits:
        bits = _getrandbits(128)
    return bits.to_bytes(16, 'big').hex()


def _trace_ids_drawer(trace_bits: int, redraw_trace_id: Callable[[], str]
                      ) -> Callable[[], tuple[str, str]]:
    """Build ``trace_ids()`` for ``trace_bits``-bit trace ids (see below)."""
    split = trace_bits // 4
    size = (trace_bits + 64) // 8
    zero_trace = '0' * split

    def trace_ids() -> tuple[str, str]:
        # PERF: one draw for both ids (a new trace is the common case of every server
        # span); a zero half (probability 2**-64) draws both again, one by one.
        ids = _getrandbits(trace_bits + 64).to_bytes(size, 'big').hex()
        trace_id = ids[:split]
        span_id = ids[split:]
        if trace_id == zero_trace or span_id == _ZERO_16:
            return redraw_trace_id(), new_span_id()
        return trace_id, span_id

    return trace_ids


#: ``() -> (trace_id, span_id)`` for a new trace: 32 and 16 hex, both non-zero.
new_trace_ids_128 = _trace_ids_drawer(128, new_trace_id_128)
#: ``() -> (trace_id, span_id)`` for a new trace: 16 hex each, both non-zero.
new_trace_ids_64 = _trace_ids_drawer(64, new_trace_id_64)
#: The one draw of each drawer above, for the tracer, which inlines it for the root span
#: of every new trace (PERF: ~550 instructions less than the call): drawer -> (bits
#: drawn, their bytes, the trace id's hex width, the zero trace id). A zero half is
#: drawn again by calling the drawer.
ONE_DRAW = {new_trace_ids_128: (192, 24, 32, '0' * 32),
            new_trace_ids_64: (128, 16, 16, '0' * 16)}


def new_xray_trace_id() -> str:
    """Return a 128-bit trace id whose first 32 bits are the current epoch seconds.

    The other 96 bits are random. Such an id is never zero (the time is not), it is a
    valid W3C/B3 trace id, and its X-Ray form ``1-{first 8}-{last 24}`` is what AWS
    X-Ray expects (it used to reject trace ids not stamped within the last 30 days).
    """
    return ((int(_time()) & 0xffffffff) << 96 | _getrandbits(96)).to_bytes(16, 'big').hex()


class RandomIdGenerator:
    """The tracer's source of new ids.

    Args:
        trace_id_128bit: draw 128-bit trace ids (32 hex, required by W3C Trace Context)
            when true, 64-bit ones (16 hex, for old B3/Zipkin peers) when false.

    The methods are plain module functions bound at construction, so calling
    ``generator.trace_id()`` costs no more than calling the function itself.
    ``trace_ids()`` returns both ids of a new trace from one draw; the tracer uses it when
    a generator has it.
    """

    __slots__ = ('trace_id', 'span_id', 'trace_ids')

    #: The right-most 7 bytes of every trace id are random (the W3C random flag).
    random_trace_ids = True

    def __init__(self, trace_id_128bit: bool = True) -> None:
        self.trace_id = new_trace_id_128 if trace_id_128bit else new_trace_id_64
        self.span_id = new_span_id
        self.trace_ids = new_trace_ids_128 if trace_id_128bit else new_trace_ids_64

    def __repr__(self) -> str:
        bits = 128 if self.trace_id is new_trace_id_128 else 64
        return f'RandomIdGenerator(trace_id_bits={bits})'


class XRayIdGenerator:
    """The tracer's source of ids when traces are viewed in AWS X-Ray.

    Trace ids come from :func:`new_xray_trace_id` (time-stamped 128-bit ids), span ids
    from :func:`new_span_id`. Same interface as :class:`RandomIdGenerator`.
    """

    __slots__ = ('trace_id', 'span_id')

    #: The time stamp is on the left; the right-most 12 bytes are random.
    random_trace_ids = True

    def __init__(self) -> None:
        self.trace_id = new_xray_trace_id
        self.span_id = new_span_id

    def __repr__(self) -> str:
        return 'XRayIdGenerator()'


class CheckedIdGenerator:
    """Another id generator, whose ids are checked (the tracer wraps any generator that
    is not one of this module's in it).

    An id that is not lower-case hex of its width (16 or 32 for a trace id, 16 for a
    span id) is replaced by a random one: the first time with a warning, every time
    counted in :attr:`replaced_ids`. A generator's ``trace_ids()`` is not used: the
    tracer draws the two ids one by one.

    Args:
        generator: an object with ``trace_id()`` and ``span_id()`` methods.
    """

    __slots__ = ('generator', 'random_trace_ids', 'replaced_ids')

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        #: Copied from the generator (default false): see the module docstring.
        self.random_trace_ids = getattr(generator, 'random_trace_ids', False) is True
        #: How many ids the generator gave that were replaced.
        self.replaced_ids = 0

    def trace_id(self) -> str:
        """The generator's trace id, or a random 128-bit one if it is not valid."""
        trace_id = self.generator.trace_id()
        if valid_trace_id(trace_id):
            return trace_id  # type: ignore[no-any-return]
        self._replaced('trace', trace_id)
        return new_trace_id_128()

    def span_id(self) -> str:
        """The generator's span id, or a random one if it is not valid."""
        span_id = self.generator.span_id()
        if valid_span_id(span_id):
            return span_id  # type: ignore[no-any-return]
        self._replaced('span', span_id)
        return new_span_id()

    def _replaced(self, kind: str, value: Any) -> None:
        self.replaced_ids += 1
        if self.replaced_ids == 1:
            _log.warning('the id generator %r gave the %s id %r, which is not lower-case '
                         'hex of its width; it is replaced by a random id (every such id '
                         'is, and counted in replaced_ids)', self.generator, kind, value)

    def __repr__(self) -> str:
        return f'CheckedIdGenerator({self.generator!r})'
