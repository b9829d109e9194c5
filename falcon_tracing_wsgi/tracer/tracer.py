"""The OpenTracing 2.x tracer: starts spans, decides sampling, injects and extracts contexts.

Design:

* The tracer **receives its collaborators** (reporter, sampler, propagator, scope manager)
  and never imports Zipkin or configuration code; ``bootstrap.py`` wires the real ones and
  tests pass fakes. Everything it can decide once (bound methods, the id generator) is
  decided in ``__init__`` so :meth:`Tracer.start_span` stays flat.
* **Sampling** (the first rule that applies wins):

  1. the parent is a local span (``child_of`` a span of this tracer, or the active span):
     the child inherits the decision, so a trace is never cut inside a service;
  2. the parent was extracted with a decision: it is followed (a debug parent always
     samples) when ``trust_inbound_sampling`` is true. When it is false, :meth:`extract`
     drops the inbound decision and debug flag, so rule 3 applies instead;
  3. no decision (new trace, a caller that deferred, or an untrusted one): the sampler is
     asked with the trace id, so probabilistic decisions agree across services.

* An extracted context that carries only a decision and/or baggage (B3 ``b3: 0``) starts a
  new trace (new trace id, no parent) that keeps the decision and the baggage.
* An inbound 64-bit trace id stays 64 bits: ids are hex strings copied from the parent.
  New trace ids are 128-bit unless ``trace_id_128bit=False``.
* The W3C *random* trace-id flag (``SpanContext.random_trace_id``) describes the trace
  id, so it travels with it: a child copies its parent's, and a new trace id gets the id
  generator's ``random_trace_ids`` (``False`` when a generator does not say).
* **Propagation** goes through one :class:`~falcon_tracing_wsgi._types.Propagator` (the
  composite of the configured formats) for both ``Format.HTTP_HEADERS`` and
  ``Format.TEXT_MAP``. The propagator reads lower-case names, so :meth:`extract` passes a
  carrier through unchanged when it declares ``case_insensitive = True`` (the middleware's
  environ view does) and otherwise builds one lower-cased dict of it. When every format
  reads only its ``fields`` and the carrier offers ``has_any(fields)`` (the environ view
  does), a carrier holding none of them gives ``None`` at once: a new trace costs one
  test instead of a lookup per header per format. Bad header content
  gives ``None`` (a new trace), never an exception; only a wrong carrier *type* or an
  unknown format raises, as the OpenTracing API requires. ``Format.BINARY`` uses this
  library's own compact encoding (see ``_binary.py``).
* **Valid ids in, valid ids out.** The contexts :meth:`extract` returns and the ids the
  tracer draws are lower-case hex of their width: this package's codecs and generators
  guarantee it (a codec says so with ``checks_ids = True``); a propagator or id
  generator given by the caller is checked here (an invalid extracted context is
  ``None``, an invalid drawn id is replaced, see ``ids.CheckedIdGenerator``). The WSGI
  wrapper's server spans are made only from those, which lets the Zipkin encoder skip
  the id check for them.
* Spans that are not sampled are :class:`~.span.UnsampledSpan` objects that record
  nothing and are never reported.
* **Span limits** (:class:`~.limits.SpanLimits`) are decided here, once, and kept as
  plain attributes the spans read, so a limit check on the hot path is a length
  compare. ``start_span`` applies them to the ``tags`` and the name it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from random import getrandbits as _getrandbits
from typing import Any, Optional, Union

import opentracing
from opentracing import (Format, InvalidCarrierException, Reference, ReferenceType,
                         UnsupportedFormatException)

from .._types import Propagator, Reporter, Sampler
from . import _binary
from .context import SpanContext, valid_ids
from .ids import ONE_DRAW, CheckedIdGenerator, RandomIdGenerator, XRayIdGenerator
from .limits import DEFAULT_SPAN_LIMITS, SpanLimits, bounded_value
from .sampler import ConstSampler, ProbabilisticSampler
from .scope import ContextVarScopeManager
from .span import Span, UnsampledSpan

__all__ = ['Tracer']

_log = logging.getLogger(__name__)

_HTTP_HEADERS = Format.HTTP_HEADERS
_TEXT_MAP = Format.TEXT_MAP
_BINARY = Format.BINARY
_PARENT_REFERENCES = (ReferenceType.CHILD_OF, ReferenceType.FOLLOWS_FROM)

_AnySpan = Union[Span, UnsampledSpan]
#: PERF: an instance without its __init__ frame (the hot path fills the slots itself).
_new_object = object.__new__
_ZERO_SPAN_ID = '0' * 16
#: The low 64 bits of an int (a trace id's, which ProbabilisticSampler decides by).
_LOW_64 = (1 << 64) - 1
_time = time.time
_perf_counter = time.perf_counter
#: The empty baggage every context without baggage shares (never modified).
_NO_BAGGAGE: dict[str, str] = SpanContext(None, None).baggage


class Tracer(opentracing.Tracer):
    """An OpenTracing 2.x tracer that hands finished sampled spans to a reporter.

    Args:
        reporter: receives each finished sampled span (see
            :class:`~falcon_tracing_wsgi._types.Reporter`).
        sampler: decides new traces (see :mod:`falcon_tracing_wsgi.tracer.sampler`).
        propagator: reads and writes ``HTTP_HEADERS``/``TEXT_MAP`` carriers (see
            :class:`~falcon_tracing_wsgi._types.Propagator`).
        scope_manager: defaults to a new
            :class:`~falcon_tracing_wsgi.tracer.scope.ContextVarScopeManager`.
        trace_id_128bit: new traces get 128-bit ids (``True``, W3C-compatible) or 64-bit
            ids (``False``, for peers that only speak 64-bit B3).
        trust_inbound_sampling: follow the sampling decision and debug flag of extracted
            contexts (``True``) or let the sampler decide every trace that enters this
            service (``False``, for services exposed to clients that must not be able to
            force sampling).
        id_generator: an object with ``trace_id()`` and ``span_id()`` methods returning
            hex ids, to replace the random ids (tests use sequential ones); when given,
            ``trace_id_128bit`` is not used. Its ids are checked (see
            :class:`~.ids.CheckedIdGenerator`) unless it is one of this package's. Its
            ``random_trace_ids`` attribute (default false) says whether the right-most
            7 bytes of its trace ids are random.
        span_limits: how much one span may record
            (:class:`~falcon_tracing_wsgi.tracer.limits.SpanLimits`; OpenTelemetry's
            defaults, with values cut at 4096 characters).

    Raises:
        TypeError: a collaborator lacks a method its protocol requires.

    Example::

        tracer = Tracer(reporter, ConstSampler(True), build_propagator(('b3', 'w3c')))
        parent = tracer.extract(Format.HTTP_HEADERS, request_headers)
        with tracer.start_active_span('GET /users', child_of=parent) as scope:
            scope.span.set_tag('http.method', 'GET')
    """

    def __init__(
        self,
        reporter: Reporter,
        sampler: Sampler,
        propagator: Propagator,
        scope_manager: Optional[opentracing.ScopeManager] = None,
        *,
        trace_id_128bit: bool = True,
        trust_inbound_sampling: bool = True,
        id_generator: Optional[Any] = None,
        span_limits: SpanLimits = DEFAULT_SPAN_LIMITS,
    ) -> None:
        _check_protocol('reporter', reporter, ('report', 'flush', 'close'), 'Reporter')
        _check_protocol('sampler', sampler, ('is_sampled',), 'Sampler')
        _check_protocol('propagator', propagator, ('extract', 'inject'), 'Propagator')
        if id_generator is None:
            id_generator = RandomIdGenerator(trace_id_128bit)
        else:
            _check_protocol('id_generator', id_generator, ('trace_id', 'span_id'),
                            'RandomIdGenerator')
            if type(id_generator) not in (RandomIdGenerator, XRayIdGenerator,
                                          CheckedIdGenerator):
                # Only this package's generators are trusted to make valid ids.
                id_generator = CheckedIdGenerator(id_generator)
        if not isinstance(span_limits, SpanLimits) or not all(
                type(limit) is int and limit >= 0 for limit in span_limits) \
                or span_limits.value_length < 1:
            raise ValueError(f'span_limits must be a SpanLimits of ints >= 0 (value_length '
                             f'>= 1), got {span_limits!r}')
        if scope_manager is None:
            scope_manager = ContextVarScopeManager()
        super().__init__(scope_manager)
        self._scopes = scope_manager
        self._reporter = reporter
        self._id_generator = id_generator
        self._sampler = sampler
        self._propagator = propagator
        self._trust = bool(trust_inbound_sampling)
        self._span_limits = span_limits
        # PERF: the limits as plain attributes: a span reads one per check.
        self._attribute_count = span_limits.attribute_count
        self._event_count = span_limits.event_count
        self._event_attribute_count = span_limits.event_attribute_count
        self._value_length = span_limits.value_length
        # PERF: bound methods looked up once; start_span and finish call them directly.
        self._report = reporter.report
        self._is_sampled = sampler.is_sampled
        self._new_trace_id = id_generator.trace_id
        self._new_span_id = id_generator.span_id
        self._new_trace_ids = getattr(id_generator, 'trace_ids', None) or self._draw_trace_ids
        self._random_ids = getattr(id_generator, 'random_trace_ids', False) is True
        self._one_draw = ONE_DRAW.get(self._new_trace_ids)
        # The hex width of every new trace id when the generator is one of this package's
        # (each draws one width); None for any other (a checked one's may vary).
        self._trace_id_width: Optional[int] = (
            len(id_generator.trace_id())
            if type(id_generator) is RandomIdGenerator or type(id_generator) is XRayIdGenerator
            else None)
        # PERF: a constant sampler's decision is read, not asked (no call per trace).
        self._const_sampler = sampler if type(sampler) is ConstSampler else None
        # PERF: a ProbabilisticSampler's decision is the low 64 bits of the trace id
        # below its threshold: for a trace whose ids were drawn at once (see
        # _start_trace) it is read from the drawn int, without two calls and a parse.
        self._sample_threshold: Optional[int] = (
            sampler._threshold if type(sampler) is ProbabilisticSampler else None)
        # When the propagator reads no header outside its ``fields``, a carrier that can
        # say none of them is present (``has_any``) lets extract() skip it altogether.
        # Whether extract() may hand on the propagator's contexts unchecked (this
        # package's codecs check every id they read; see tracer/context.py).
        self._extract_checked = getattr(propagator, 'checks_ids', False) is True
        self._exhaustive_fields: Optional[tuple[str, ...]] = (
            tuple(getattr(propagator, 'fields', ()))
            if getattr(propagator, 'reads_only_fields', False) else None)

    @property
    def reporter(self) -> Reporter:
        """The reporter finished sampled spans go to."""
        return self._reporter

    @property
    def span_limits(self) -> SpanLimits:
        """How much one span may record."""
        return self._span_limits

    @property
    def sampler(self) -> Sampler:
        """The sampler that decides new traces."""
        return self._sampler

    @property
    def id_generator(self) -> Any:
        """Where new ids come from: this package's generator, or the one given wrapped
        in a :class:`~.ids.CheckedIdGenerator` (its ``replaced_ids`` counts the invalid
        ids it replaced)."""
        return self._id_generator

    @property
    def propagator(self) -> Propagator:
        """The propagator used for ``HTTP_HEADERS`` and ``TEXT_MAP``."""
        return self._propagator

    def start_active_span(
        self,
        operation_name: str,
        child_of: Union[opentracing.Span, opentracing.SpanContext, None] = None,
        references: Optional[Iterable[Reference]] = None,
        tags: Optional[dict[str, Any]] = None,
        start_time: Optional[float] = None,
        ignore_active_span: bool = False,
        finish_on_close: bool = True,
    ) -> opentracing.Scope:
        """Start a span and make it active; see :meth:`opentracing.Tracer.start_active_span`.

        Returns:
            The scope; closing it (or leaving its ``with`` block) deactivates the span and,
            with ``finish_on_close``, finishes it.
        """
        span = self.start_span(operation_name, child_of, references, tags, start_time,
                               ignore_active_span)
        return self._scopes.activate(span, finish_on_close)

    def start_span(
        self,
        operation_name: Optional[str] = None,
        child_of: Union[opentracing.Span, opentracing.SpanContext, None] = None,
        references: Optional[Iterable[Reference]] = None,
        tags: Optional[dict[str, Any]] = None,
        start_time: Optional[float] = None,
        ignore_active_span: bool = False,
        span_class: type[Span] = Span,
    ) -> _AnySpan:
        """Start a span; see :meth:`opentracing.Tracer.start_span`.

        The parent is ``child_of``, else the first ``CHILD_OF`` reference with a
        context, else the first ``FOLLOWS_FROM`` one, else (unless
        ``ignore_active_span``) the active span. The other references (and a
        ``FOLLOWS_FROM`` parent) are kept on a sampled span as ``span.references``, for
        exporters that record links.
        ``tags`` is used as the span's tag dict without a copy (the caller gives it up, as
        the OpenTracing API allows); it is ignored when the span is not sampled.

        ``span_class`` (not part of the OpenTracing API) is the class of a sampled span:
        the WSGI wrapper asks for a :class:`~.span.ServerSpan`.

        Returns:
            A ``span_class`` when sampled, else an :class:`~.span.UnsampledSpan`.
        """
        parent: Any = None
        links: Optional[tuple[Reference, ...]] = None
        if child_of is not None:
            parent = (child_of if isinstance(child_of, opentracing.SpanContext)
                      else child_of.context)
        elif references:
            parent, links = _parent_and_links(references)
        if parent is None and not ignore_active_span:
            scope = self._scopes.active
            if scope is not None:
                parent = scope.span.context
        name = '' if operation_name is None else operation_name
        if type(name) is not str or len(name) > self._value_length:
            name = bounded_value(name, self._value_length)
        if tags and not _within(tags, self._attribute_count, self._value_length):
            tags = _bounded_tags(tags, self._attribute_count, self._value_length)

        if parent is None:
            return self._start_trace(name, tags, start_time, span_class)
        span_id = self._new_span_id()
        if isinstance(parent, SpanContext):
            sampled = True if parent.debug else parent.sampled
            if parent.trace_id is not None and parent.span_id is not None:
                trace_id = parent.trace_id
                if sampled is None:
                    sampled = self._decide(trace_id, name)
                context = SpanContext(trace_id, span_id, parent.span_id, sampled,
                                      parent.debug, parent.baggage, parent.tracestate,
                                      parent.extra, parent.random_trace_id)
            elif parent.trace_id is not None:
                # A trace to join without a caller's span (X-Ray's Root alone, from a
                # load balancer): a root span of that trace, keeping what came with it.
                trace_id = parent.trace_id
                if sampled is None:
                    sampled = self._decide(trace_id, name)
                context = SpanContext(trace_id, span_id, None, sampled, parent.debug,
                                      parent.baggage, parent.tracestate, parent.extra,
                                      parent.random_trace_id)
            else:
                # A decision and/or baggage without ids: a new trace that keeps them.
                trace_id = self._new_trace_id()
                if sampled is None:
                    sampled = self._decide(trace_id, name)
                context = SpanContext(trace_id, span_id, None, sampled, parent.debug,
                                      parent.baggage, None, None, self._random_ids)
        else:
            trace_id = self._new_trace_id()
            context = SpanContext(trace_id, span_id, None, self._decide(trace_id, name),
                                  False, _foreign_baggage(parent), None, None,
                                  self._random_ids)

        if context.sampled:
            span = span_class(self, context, name, start_time, tags)
            if links:
                span.references = links
            return span
        return UnsampledSpan(self, context, name)

    def _start_trace(self, name: str, tags: Optional[dict[str, Any]],
                     start_time: Optional[float], span_class: type[Span] = Span) -> _AnySpan:
        """Start the root span of a new trace: no parent, the sampler decides.

        The common case of every server span, kept flat; the middleware's environ fast
        path calls it directly.
        """
        draw = self._one_draw
        const = self._const_sampler
        if draw is not None:
            # PERF: the package's generator's trace_ids() inlined (see ids.ONE_DRAW).
            bits, size, split, zero = draw
            drawn = _getrandbits(bits)
            ids = drawn.to_bytes(size, 'big').hex()
            trace_id = ids[:split]
            span_id = ids[split:]
            if trace_id == zero or span_id == _ZERO_SPAN_ID:
                trace_id, span_id = self._new_trace_ids()  # probability 2**-64
                sampled = (const.decision if const is not None
                           else self._decide(trace_id, name))
            elif const is not None:
                sampled = const.decision
            else:
                threshold = self._sample_threshold
                # PERF: ProbabilisticSampler.is_sampled(trace_id) without the two calls:
                # the trace id is the drawn int's bits above the span id's 64, and the
                # sampler compares its low 64 bits with the threshold.
                sampled = ((drawn >> 64) & _LOW_64 < threshold if threshold is not None
                           else self._decide(trace_id, name))
        else:
            trace_id, span_id = self._new_trace_ids()
            sampled = const.decision if const is not None else self._decide(trace_id, name)
        # PERF: SpanContext(trace_id, span_id, None, sampled, False, None, None, None,
        # random) without its __init__ frame: the root context of every new trace.
        context = _new_object(SpanContext)
        context.trace_id = trace_id
        context.span_id = span_id
        context.parent_id = None
        context.sampled = sampled
        context.debug = False
        context._baggage = _NO_BAGGAGE
        context.tracestate = None
        context.extra = None
        context.random_trace_id = self._random_ids
        if sampled:
            if start_time is not None:
                return span_class(self, context, name, start_time, tags)
            # PERF: Span.__init__ without its frame (the span_class given here never
            # adds to it): the sampled span of every new trace.
            span = _new_object(span_class)
            span._tracer = self
            span._context = context
            span.operation_name = name
            span.start_time = _time()
            span._perf_start = _perf_counter()
            span.duration = None
            span._tags = {} if tags is None else tags
            span.logs = span.references = None
            span.dropped_attributes_count = span.dropped_events_count = 0
            return span
        # PERF: UnsampledSpan(self, context, name) without its __init__ frame: the span
        # of every unsampled request.
        unsampled = _new_object(UnsampledSpan)
        unsampled._tracer = self
        unsampled._context = context
        unsampled.operation_name = name
        return unsampled

    def _draw_trace_ids(self) -> tuple[str, str]:
        # For id generators without trace_ids(): the span id first, as start_span draws.
        span_id = self._new_span_id()
        return self._new_trace_id(), span_id

    def _decide(self, trace_id: str, operation_name: str) -> bool:
        try:
            return True if self._is_sampled(trace_id, operation_name) else False
        except Exception:
            _log.warning('the sampler failed; the trace is not sampled', exc_info=True)
            return False

    def inject(self, span_context: Union[opentracing.SpanContext, opentracing.Span],
               format: str, carrier: Any) -> None:
        """Write ``span_context`` into ``carrier``.

        Args:
            span_context: the context to propagate (a span is accepted too).
            format: ``Format.HTTP_HEADERS`` or ``Format.TEXT_MAP`` (``carrier`` is a
                mutable mapping; the propagator writes its headers) or ``Format.BINARY``
                (``carrier`` is a ``bytearray``; the encoding is appended).
            carrier: see ``format``.

        Raises:
            UnsupportedFormatException: an unknown format.
            InvalidCarrierException: the carrier has the wrong type for the format.

        A context from another tracer has nothing to propagate and is skipped; a failure
        inside the propagator is logged, never raised.
        """
        if isinstance(span_context, opentracing.Span):
            span_context = span_context.context
        if format == _HTTP_HEADERS or format == _TEXT_MAP:
            if not hasattr(carrier, '__setitem__'):
                raise InvalidCarrierException(
                    f'{format} needs a mutable mapping carrier, got {type(carrier).__name__}')
            if not isinstance(span_context, SpanContext):
                _log.debug('not injecting %r: not a context of this tracer', span_context)
                return
            try:
                self._propagator.inject(span_context, carrier)
            except Exception:
                _log.warning('the propagator failed to inject a span context', exc_info=True)
        elif format == _BINARY:
            if not isinstance(carrier, bytearray):
                raise InvalidCarrierException(
                    f'{format} needs a bytearray carrier, got {type(carrier).__name__}')
            if not isinstance(span_context, SpanContext):
                _log.debug('not injecting %r: not a context of this tracer', span_context)
                return
            try:
                carrier.extend(_binary.encode(span_context))
            except ValueError:
                _log.warning('cannot encode %r in the binary format', span_context,
                             exc_info=True)
        else:
            raise UnsupportedFormatException(format)

    def extract(  # type: ignore[override]  # the stubs forget the documented None
            self, format: str, carrier: Any) -> Optional[SpanContext]:
        """Read a span context from ``carrier``.

        Args:
            format: ``Format.HTTP_HEADERS`` or ``Format.TEXT_MAP`` (``carrier`` is a
                mapping; header names may have any case) or ``Format.BINARY``
                (``carrier`` is ``bytes``, a ``bytearray`` or a ``memoryview``).
            carrier: see ``format``. A mapping whose ``case_insensitive`` attribute is
                true is read as it is; others are copied once into a lower-cased dict.

        Returns:
            The context, or ``None`` when the carrier holds none or an invalid one.
            With ``trust_inbound_sampling=False`` its decision and debug flag are removed.

        Raises:
            UnsupportedFormatException: an unknown format.
            InvalidCarrierException: the carrier has the wrong type for the format.
        """
        if format == _HTTP_HEADERS or format == _TEXT_MAP:
            if getattr(carrier, 'case_insensitive', False):
                fields = self._exhaustive_fields
                if fields is not None:
                    has_any = getattr(carrier, 'has_any', None)
                    # PERF: a request without any trace header (a new trace) is one
                    # C-level test in the middleware's environ view, not a lookup per
                    # header per format.
                    if has_any is not None and not has_any(fields):
                        return None
                view = carrier
            else:
                view = _lowered(carrier)
            try:
                context = self._propagator.extract(view)
            except Exception:
                # Client-controlled input: the propagator should have said None; a new
                # trace is the answer either way.
                _log.debug('could not extract a span context', exc_info=True)
                return None
            if isinstance(context, SpanContext) and not self._extract_checked \
                    and not valid_ids(context):
                _log.debug('ignoring an extracted span context with invalid ids: %r',
                           context)
                return None
        elif format == _BINARY:
            if not isinstance(carrier, (bytes, bytearray, memoryview)):
                raise InvalidCarrierException(
                    f'{format} needs a bytes-like carrier, got {type(carrier).__name__}')
            context = _binary.decode(carrier)
        else:
            raise UnsupportedFormatException(format)
        if context is not None and not self._trust and (context.sampled is not None
                                                        or context.debug):
            context = SpanContext(context.trace_id, context.span_id, context.parent_id,
                                  None, False, context.baggage, context.tracestate,
                                  context.extra, context.random_trace_id)
        return context

    def flush(self, timeout: float = 5.0) -> bool:
        """Ask the reporter to send what it holds; see ``Reporter.flush``.

        Returns:
            Whether everything was sent within ``timeout`` seconds.
        """
        try:
            return self._reporter.flush(timeout)
        except Exception:
            _log.warning('the reporter failed to flush', exc_info=True)
            return False

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush and stop the reporter; see ``Reporter.close``.

        ``timeout=None`` lets the reporter use its own shutdown deadline
        (``FALCON_TRACING_SHUTDOWN_TIMEOUT`` for the reporters this package builds).

        Returns:
            Whether everything was sent within ``timeout`` seconds.
        """
        try:
            return self._reporter.close(timeout)
        except Exception:
            _log.warning('the reporter failed to close', exc_info=True)
            return False

    def __repr__(self) -> str:
        return (f'Tracer(reporter={self._reporter!r}, sampler={self._sampler!r}, '
                f'propagator={self._propagator!r}, scope_manager={self._scopes!r}, '
                f'trust_inbound_sampling={self._trust!r})')


def _within(tags: dict[str, Any], count: int, limit: int) -> bool:
    """Whether start_span's ``tags`` can be the span's tag dict as they are."""
    if len(tags) > count:
        return False
    for key, value in tags.items():
        if type(key) is not str or len(key) > limit:
            return False
        if type(value) is str:
            if len(value) > limit:
                return False
        elif bounded_value(value, limit) is not value:
            return False
    return True


def _bounded_tags(tags: dict[str, Any], count: int, limit: int) -> dict[str, Any]:
    # NOTE: the tags beyond ``count`` cannot be counted as dropped: the span does not
    # exist yet. They are kept in order, so the first ones given win.
    out: dict[str, Any] = {}
    for key, value in tags.items():
        if len(out) >= count:
            break
        out[bounded_value(key, limit)] = bounded_value(value, limit)
    return out


def _check_protocol(role: str, obj: object, methods: tuple[str, ...], protocol: str) -> None:
    missing = [name for name in methods if not callable(getattr(obj, name, None))]
    if missing:
        raise TypeError(f'the {role} must have the method(s) {", ".join(missing)} of a '
                        f'{protocol}; got {obj!r}')


def _parent_and_links(references: Any) -> tuple[Optional[opentracing.SpanContext],
                                                  Optional[tuple[Reference, ...]]]:
    """The parent among ``references`` and the references kept as links.

    The parent is the first ``CHILD_OF`` reference with a context, else the first
    ``FOLLOWS_FROM`` one (OpenTelemetry's OpenTracing compatibility rule). Every other
    reference to a span of this tracer is kept for the exporters (OTLP links), and so is
    a ``FOLLOWS_FROM`` parent, so that its kind of relationship is not lost; a
    ``CHILD_OF`` parent is the span's parent id and nothing more.
    """
    # A single Reference is accepted too: opentracing's own docstring passes one.
    if isinstance(references, Reference):
        references = (references,)
    usable = [reference for reference in references
              if reference.type in _PARENT_REFERENCES
              and reference.referenced_context is not None]
    if not usable:
        return None, None
    parent = next((reference for reference in usable
                   if reference.type == ReferenceType.CHILD_OF), usable[0])
    links = tuple(reference for reference in usable
                  if (reference is not parent or reference.type != ReferenceType.CHILD_OF)
                  and isinstance(reference.referenced_context, SpanContext)
                  and reference.referenced_context.has_ids)
    context: opentracing.SpanContext = parent.referenced_context
    return context, links or None


def _foreign_baggage(parent: Any) -> Optional[dict[str, str]]:
    # Another tracer's context (or none): its ids mean nothing here, its baggage still does.
    if parent is None:
        return None
    baggage = getattr(parent, 'baggage', None)
    return dict(baggage) if baggage else None


def _lowered(carrier: Any) -> dict[str, Any]:
    try:
        items = carrier.items
    except AttributeError:
        raise InvalidCarrierException(
            f'header carriers must be mappings, got {type(carrier).__name__}') from None
    try:
        return {name.lower(): value for name, value in items()}
    except AttributeError:
        # A non-string key is bad content, not a bad carrier: skip it.
        return {name.lower(): value for name, value in items() if isinstance(name, str)}
    except (TypeError, ValueError) as exc:
        raise InvalidCarrierException(
            f'the carrier items() must yield (name, value) pairs: {exc}') from None
