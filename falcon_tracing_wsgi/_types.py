"""Typing-only contracts shared across the package.

Nothing here runs on the hot path; these Protocols document what each collaborator must
offer so that the tracer, the propagation codecs and the reporters can be developed,
replaced and tested independently (``bootstrap.py`` wires the real ones together).

The contracts:

``Propagator``
    One wire format (B3, W3C, Jaeger, ...). ``extract`` reads from a carrier that answers
    ``get(name)`` for **lower-case** header names (case-insensitively) and iterates its
    header names; it returns a :class:`~falcon_tracing_wsgi.tracer.context.SpanContext` or
    ``None`` when the format is absent **or invalid**. It never raises on bad input and
    bounds the work spent on one header. ``inject`` writes the context's headers into a
    mutable mapping using the format's canonical header names.

``Sampler``
    Decides for a new trace (or one whose parent deferred). Called with the trace id so a
    probabilistic decision can be consistent across services.

``Reporter``
    Receives finished, *sampled* spans. ``report`` must never block and never raise.
    ``flush``/``close`` return within their deadline and say whether everything went out.

``Sender``
    Sends one encoded batch somewhere (HTTP to a Zipkin collector, a file, ...). Raises
    :class:`SendError` on failure, saying whether a retry may help (and after how long,
    when the collector said so); returns :class:`PartialSuccess` when the collector took
    only part of the batch, else ``None``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .tracer.context import SpanContext

__all__ = ['Carrier', 'Propagator', 'Sampler', 'Reporter', 'Sender', 'SendError',
           'PartialSuccess', 'StartResponse', 'WSGIEnviron', 'WSGIApp']

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Any]


class Carrier(Protocol):
    """A read-only header view: ``get`` takes a lower-case header name."""

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]: ...

    def __iter__(self) -> Iterator[str]: ...


class Propagator(Protocol):
    """One propagation format."""

    #: The lower-case header names this format reads (used to document and to benchmark).
    fields: tuple[str, ...]

    def extract(self, carrier: Mapping[str, str]) -> Optional[SpanContext]: ...

    def inject(self, context: SpanContext, carrier: MutableMapping[str, str]) -> None: ...


class Sampler(Protocol):
    """Makes the sampling decision for a new trace."""

    def is_sampled(self, trace_id: str, operation_name: str) -> bool: ...


class Reporter(Protocol):
    """Takes finished sampled spans; never blocks the caller, never raises."""

    def report(self, span: Any) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: Optional[float] = None) -> bool: ...


class Sender(Protocol):
    """Sends one encoded batch of spans."""

    def send(self, body: bytes, span_count: int) -> Optional[PartialSuccess]: ...

    #: Optional: where the spans go, for log lines (``http://host:9411/api/v2/spans``).
    destination: str

    def close(self) -> None: ...


class SendError(Exception):
    """A batch could not be sent.

    Args:
        message: what went wrong, for the (rate-limited) log line.
        retryable: whether sending the same batch again may succeed (connection errors,
            timeouts, 5xx) or not (4xx: the collector rejected the payload).
        retry_after: seconds the collector asked to wait before trying again (HTTP
            ``Retry-After``), or ``None``; the reporter waits that long instead of its
            own backoff, within its deadline.
        too_large: the destination refused the batch for its size (HTTP 413); the
            pipeline then sends each half of it on its own.
    """

    def __init__(self, message: str, retryable: bool,
                 retry_after: Optional[float] = None, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.too_large = too_large


class PartialSuccess(NamedTuple):
    """What a sender returns when the collector accepted a batch only in part.

    OTLP's ``ExportTraceServiceResponse.partial_success``: the collector answered 200
    but rejected ``rejected`` spans, saying why in ``message``. Such a batch is not
    retried (the OTLP specification forbids it); the reporter counts the rejected spans
    as failed. A sender returns ``None`` when everything was accepted.
    """

    rejected: int
    message: str
