"""Export: finished spans leave the process, in whatever wire format the backend reads.

One pipeline serves every format::

    finished span -> pipeline (queue, batches, worker, retries, deadlines, accounting)
                  -> encoder (one module per wire format)
                  -> sender  (one module per transport)

* :mod:`.pipeline`: :class:`~.pipeline.BatchReporter`, the Reporter the tracer talks to
  (a bounded queue, a lazily started fork-safe worker, counted drops, deadlines), and
  :class:`~.pipeline.NoopReporter` for ``none``. It knows no format and no transport.
* Formats, each pure (no I/O, no threads): :mod:`.zipkin` (Zipkin v2 JSON),
  :mod:`.otlp` (OpenTelemetry's OTLP, protobuf and JSON, with its own framing and a
  reader for the collector's partial-success answer) and :mod:`.xray` (X-Ray segment
  documents).
* Transports: :mod:`.http` (POST to a collector: Zipkin, or OTLP/HTTP with its content
  type, retryable statuses and ``Retry-After``), :mod:`.file` (JSON lines to a stream
  or file) and :mod:`.udp` (datagrams to the X-Ray daemon).

``bootstrap.py`` picks one encoder and one sender for the configured reporter. The
tracer never imports this package; it only knows the Reporter protocol
(``report(span)``, ``flush(timeout)``, ``close(timeout)``).

Importing this package starts no thread and does no I/O, and loads no format or
transport module: each is imported by the reporter that uses it.
"""
