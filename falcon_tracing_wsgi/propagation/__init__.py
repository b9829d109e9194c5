"""Propagation formats, the composite that chains them, and the registry of their names.

Each format is a small stateless class with ``extract(carrier)`` and
``inject(context, carrier)`` (the ``Propagator`` contract in ``_types.py``):

============  =======================================  ====================================
name          reads                                    writes
============  =======================================  ====================================
``b3``        ``b3``, then ``X-B3-*``                  ``X-B3-TraceId``, ``X-B3-SpanId``,
                                                       ``X-B3-ParentSpanId``,
                                                       ``X-B3-Sampled`` / ``X-B3-Flags``
``b3single``  ``b3``, then ``X-B3-*``                  ``b3``
``w3c``       ``traceparent``, ``tracestate``          ``traceparent``, ``tracestate``
``baggage``   ``baggage``                              ``baggage``
``jaeger``    ``uber-trace-id``, ``uberctx-*``,        ``uber-trace-id``, ``uberctx-*``
              ``jaeger-debug-id``
``xray``      ``X-Amzn-Trace-Id``                      ``X-Amzn-Trace-Id``
============  =======================================  ====================================

:class:`CompositePropagator` lets a service speak several formats at once, which is what
a mixed fleet needs: extract tries the formats in the configured order and the first one
that names a span wins, while baggage (and W3C ``tracestate``) found by the others is not
lost; inject writes every format, so each downstream service finds the one it reads.

:data:`PROPAGATORS` maps each name to a factory and is a plain dict so that another
format is one more entry; :func:`build_propagator` turns a list of names (from
configuration) into one propagator.

Every propagator also has ``with_header_names(name)``: a copy that injects each header
under ``name(header)``. The WSGI middleware uses it with ``environ_key`` to write the
server span's context straight into the environ (``HTTP_X_B3_TRACEID``, ...) instead of
into a dict whose names it would translate on every request; extraction is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Callable, Optional, Union

from ..tracer.context import SpanContext
from ._common import HeaderName
from .b3 import B3MultiPropagator, B3SinglePropagator
from .baggage import W3CBaggagePropagator
from .jaeger import JaegerPropagator
from .w3c import TraceContextPropagator
from .xray import XRayPropagator

if TYPE_CHECKING:  # pragma: no cover
    from .._types import Propagator

__all__ = ['B3MultiPropagator', 'B3SinglePropagator', 'TraceContextPropagator',
           'W3CBaggagePropagator', 'JaegerPropagator', 'XRayPropagator',
           'CompositePropagator',
           'PROPAGATORS', 'build_propagator']


def _same_trace(a: Optional[str], b: Optional[str]) -> bool:
    """Whether two trace ids name the same trace (a 64-bit id equals its padded form)."""
    if a is None or b is None:
        return False
    return a == b or a.rjust(32, '0') == b.rjust(32, '0')


class CompositePropagator:
    """Several formats as one: extract from the first that names a span, inject into all.

    Extraction rules, in order:

    1. Every format is asked. The winner is the first context that names a span
       (``has_ids``); failing that, the first that names a trace to join (X-Ray's
       ``Root`` without ``Parent``); failing that, the first that carries a sampling
       decision; failing that, the first context at all (baggage only).
    2. Baggage is merged from every context; for a key found by several formats, the
       earlier format wins.
    3. ``tracestate`` is kept from a context (in practice the W3C one) whose trace id is
       the winner's, so a caller sending both ``b3`` and ``traceparent`` for one trace
       keeps its vendor state; ``extra`` fields are merged the same way, also from
       contexts without ids.
    4. The winner's sampling decision is kept as is; a decision from another format is
       not merged in (a B3 "defer" must stay a deferral even if a W3C header for the
       same trace carries the ``00`` flags that W3C uses for "not recorded").

    Args:
        propagators: the formats, in extraction priority order.

    Raises:
        ValueError: when ``propagators`` is empty.
    """

    __slots__ = ('_propagators', 'fields', 'reads_only_fields', 'checks_ids')

    def __init__(self, propagators: Sequence[Propagator]) -> None:
        self._propagators = tuple(propagators)
        if not self._propagators:
            raise ValueError('CompositePropagator needs at least one propagator')
        fields: list[str] = []
        for propagator in self._propagators:
            fields.extend(f for f in propagator.fields if f not in fields)
        #: The union of the formats' header names, in order.
        self.fields: tuple[str, ...] = tuple(fields)
        #: Whether every format reads only its ``fields`` (Jaeger's ``uberctx-*`` do not).
        self.reads_only_fields = all(getattr(propagator, 'reads_only_fields', False)
                                     for propagator in self._propagators)
        #: Whether every format's extract() returns only valid ids (see tracer/context.py).
        self.checks_ids = all(getattr(propagator, 'checks_ids', False) is True
                              for propagator in self._propagators)

    @property
    def propagators(self) -> tuple[Propagator, ...]:
        """The chained formats, in priority order."""
        return self._propagators

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]:
        """Extract with every format and combine the results (see the class docstring)."""
        contexts = []
        for propagator in self._propagators:
            context = propagator.extract(carrier)
            if context is not None:
                contexts.append(context)
        if len(contexts) <= 1:
            return contexts[0] if contexts else None

        winner = None
        for context in contexts:
            if context.has_ids:
                winner = context
                break
        else:
            for context in contexts:
                if context.trace_id is not None:
                    winner = context
                    break
            else:
                for context in contexts:
                    if context.sampled is not None:
                        winner = context
                        break
                else:
                    winner = contexts[0]
        return self._merge(winner, contexts)

    @staticmethod
    def _merge(winner: SpanContext, contexts: list[SpanContext]) -> SpanContext:
        baggage = winner.baggage
        tracestate = winner.tracestate
        extra = winner.extra
        random_trace_id = winner.random_trace_id
        changed = False
        for context in contexts:
            if context is winner:
                continue
            if context.baggage:
                if baggage is winner.baggage:
                    baggage = dict(baggage)
                for key, value in context.baggage.items():
                    baggage.setdefault(key, value)
                changed = True
            same_trace = _same_trace(context.trace_id, winner.trace_id)
            if tracestate is None and context.tracestate is not None and same_trace:
                tracestate = context.tracestate
                changed = True
            if not random_trace_id and context.random_trace_id and same_trace:
                # Only W3C carries the flag; it describes the id whichever format won.
                random_trace_id = True
                changed = True
            if context.extra and (same_trace or context.trace_id is None):
                extra = dict(context.extra, **extra) if extra else dict(context.extra)
                changed = True
        if not changed:
            return winner
        return SpanContext(winner.trace_id, winner.span_id, winner.parent_id, winner.sampled,
                           winner.debug, baggage, tracestate, extra, random_trace_id)

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None:
        """Write ``context`` in every format, in order."""
        for propagator in self._propagators:
            propagator.inject(context, carrier)

    def with_header_names(self, name: HeaderName) -> CompositePropagator:
        """Return a composite of the formats' own ``with_header_names(name)``.

        Args:
            name: maps each header name, as the formats write it by default, to the one
                to write instead (see :class:`~._common.HeaderNames`).

        Raises:
            TypeError: when a format has no ``with_header_names`` (a format from
                elsewhere): its headers cannot be renamed.
        """
        renamed: list[Propagator] = []
        for propagator in self._propagators:
            rename: Optional[Callable[[HeaderName], Propagator]] = getattr(
                propagator, 'with_header_names', None)
            if rename is None:
                raise TypeError(f'{type(propagator).__name__} cannot write its headers under '
                                'other names: it has no with_header_names()')
            renamed.append(rename(name))
        return type(self)(renamed)


#: Format name -> factory. A plain dict: registering a format is adding one entry.
PROPAGATORS: dict[str, Callable[[], Propagator]] = {
    'b3': B3MultiPropagator,
    'b3single': B3SinglePropagator,
    'w3c': TraceContextPropagator,
    'baggage': W3CBaggagePropagator,
    'jaeger': JaegerPropagator,
    'xray': XRayPropagator,
}


def build_propagator(names: Union[Sequence[str], str]) -> Propagator:
    """Build the propagator for a list of format names.

    Args:
        names: format names from :data:`PROPAGATORS`, in extraction priority order;
            case and surrounding spaces are ignored, repeats are dropped. A single
            string is read as a comma-separated list (``"b3,w3c"``).

    Returns:
        The format's propagator for one name, a :class:`CompositePropagator` otherwise.

    Raises:
        ValueError: for an unknown name or an empty list; the message lists the valid
            names.
    """
    if isinstance(names, str):
        names = names.split(',')
    keys: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key not in PROPAGATORS:
            raise ValueError(f'unknown propagation format {name!r}; valid names are: '
                             f'{", ".join(sorted(PROPAGATORS))}')
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ValueError('no propagation format given; valid names are: '
                         f'{", ".join(sorted(PROPAGATORS))}')
    propagators = [PROPAGATORS[key]() for key in keys]
    if len(propagators) == 1:
        return propagators[0]
    return CompositePropagator(propagators)
