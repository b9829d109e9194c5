"""AWS X-Ray reporting: finished spans as segment documents, over UDP to the X-Ray daemon.

The pieces (``bootstrap.py`` wires them for ``FALCON_TRACING_REPORTER=xray``):

* :class:`SegmentEncoder` (``encoding``): a finished span to the text of one daemon
  datagram (header line and segment document); pure, no I/O.
* :class:`UdpSender` (``sender``): sends each datagram of a batch to the daemon.
* The reporter is the Zipkin package's
  :class:`~falcon_tracing_wsgi.zipkin.reporter.BatchReporter`: its queue, lazy fork-safe
  worker, counters and deadlines do not depend on the wire format, only on an encoder and
  a sender, so X-Ray reuses it rather than duplicating it.

X-Ray trace ids carry the epoch seconds in their first 32 bits; traces that start here
get such ids when ``FALCON_TRACING_XRAY_IDS`` is on (automatically with this reporter).
The ``X-Amzn-Trace-Id`` header is the ``xray`` propagation format
(:mod:`falcon_tracing_wsgi.propagation.xray`).

Importing this package starts no thread and does no I/O.
"""

from __future__ import annotations

from .encoding import DAEMON_HEADER, MAX_DATAGRAM_BYTES, SegmentEncoder
from .sender import DEFAULT_DAEMON_ADDRESS, UdpSender

__all__ = ['SegmentEncoder', 'UdpSender', 'DAEMON_HEADER', 'MAX_DATAGRAM_BYTES',
           'DEFAULT_DAEMON_ADDRESS']
