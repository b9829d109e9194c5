"""Export: finished spans leave the process, in whatever wire format the backend reads.

One pipeline serves every format::

    finished span -> pipeline (queues, batches by bytes, worker, retries, deadlines,
                               accounting)
                  -> encoder (one module per wire format): a piece per span, a body per batch
                  -> sender  (one module per transport): delivers the body

* :mod:`.pipeline`: :class:`~.pipeline.BatchReporter`, the Reporter the tracer talks to
  (bounded in spans and bytes, a lazily started fork-safe worker, request threads that
  help encode when it falls behind, counted drops, deadlines), and
  :class:`~.pipeline.NoopReporter` for ``none``. It knows no format and no transport;
  its docstring records where the time goes and why it is built this way.
* Formats, each pure (no I/O, no threads): :mod:`.zipkin` (Zipkin v2 JSON),
  :mod:`.otlp` (OpenTelemetry's OTLP, protobuf and JSON, with its own framing and a
  reader for the collector's partial-success answer) and :mod:`.xray` (X-Ray segment
  documents).
* Transports: :mod:`.http` (POST to a collector: Zipkin, or OTLP/HTTP with its content
  type, retryable statuses and ``Retry-After``), :mod:`.file` (lines to a stream or a
  file) and :mod:`.udp` (datagrams to the X-Ray daemon).

The contract between them
-------------------------

**Encoder** (a format):

``encode(span) -> str | bytes | None``
    One *piece* per finished span: the span in the format (a JSON object's text, a
    protobuf message's bytes, a datagram). ``None`` (or an exception) means the span
    cannot be encoded; the pipeline counts it as failed. ``len(piece)`` is taken as its
    size in bytes (ASCII text, or bytes), for the byte bounds.
``frame(pieces) -> bytes`` (optional)
    The body of one request carrying these pieces: a JSON array for Zipkin, an
    ``ExportTraceServiceRequest`` for OTLP. Without it the pieces are joined as a JSON
    array. Framing may add a little per piece and per batch (the pipeline allows 8 bytes
    per piece and 1 KiB per batch when it fills a batch up to ``max_batch_bytes``).
``frame_into(pieces, buffer) -> bytes | memoryview`` (optional, with ``frame``)
    ``frame(pieces)``, a large body written into ``buffer`` (a
    :class:`~._framing.BodyBuffer`: storage the pipeline reuses from batch to batch, so
    that a busy process does not take every body's pages from the kernel again). Used
    only for a sender that ``borrows_body``.
``content_type`` (optional)
    The media type of the body; ``bootstrap`` hands it to the sender that needs it.
``name`` (optional)
    The format in log lines (``zipkin``, ``xray``, ``otlp``).

**Sender** (a transport):

``send(body, span_count, timeout=None) -> PartialSuccess | None``
    Delivers one body (returning a :class:`~falcon_tracing_wsgi._types.PartialSuccess`
    when the collector accepted only part of it), or raises :class:`~falcon_tracing_wsgi._types.SendError` with
    ``retryable`` (may the same body pass later?) and ``too_large`` (the destination
    refused its size, HTTP 413: the pipeline sends each half on its own, down to the one
    span that is too large, which fails alone). ``timeout`` is the caller's remaining
    time: the send must not take longer.
``close()``
    Releases the connection or file, and **never waits** for a send in progress on
    another thread (it may abort it): shutdown deadlines depend on it.
``frame(pieces) -> bytes`` (optional)
    Only for a transport with its own framing, which then wins over the format's: the
    file transport writes one piece per line, the UDP transport one datagram per piece.
``frame_into(pieces, buffer)`` (optional, with ``frame``)
    As the format's (above), for the transport's own framing.
``borrows_body`` (optional, default false)
    True when ``send()`` reads the body only until it returns (keeps no reference) and
    takes any bytes-like object: the body may then be a ``memoryview`` of the
    pipeline's reused storage, which the next batch overwrites. The HTTP and file
    transports do; any other sender keeps getting ``bytes``.
``destination`` (optional)
    Where the spans go, in log lines (a URL without its query, a path, ``udp://...``).

Every lock a sender or encoder holds is made again in a forked child
(:func:`falcon_tracing_wsgi._sync.after_fork_in_child`), so a fork in the middle of a
send never leaves the child's reporter stuck.

``bootstrap.py`` picks one encoder and one sender for the configured reporter. The
tracer never imports this package; it only knows the Reporter protocol
(``report(span)``, ``flush(timeout)``, ``close(timeout)``).

Importing this package starts no thread and does no I/O, and loads no format or
transport module: each is imported by the reporter that uses it.
"""
