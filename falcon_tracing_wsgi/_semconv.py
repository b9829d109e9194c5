"""HTTP tag names: OpenTracing's, OpenTelemetry's stable HTTP semantic conventions, or both.

Design:

* **One naming scheme per process, chosen once.** ``old`` is the OpenTracing names this
  package has always written (``http.method``, ``http.url``, ``http.status_code``,
  ``peer.ipv4``/``peer.ipv6``/``peer.port``, ``peer.hostname``); ``stable`` is
  OpenTelemetry's stable HTTP conventions (``http.request.method``, ``url.path``,
  ``url.query``, ``url.scheme``, ``url.full``, ``http.response.status_code``,
  ``server.address``/``server.port``, ``client.address``,
  ``network.peer.address``/``network.peer.port``, ``network.protocol.version``,
  ``user_agent.original``, ``error.type``); ``dup`` writes both, for a phased migration.
  These are the three behaviours of OpenTelemetry's ``OTEL_SEMCONV_STABILITY_OPT_IN``
  (unset, ``http``, ``http/dup``); ``TracingConfig.effective_http_semconv`` resolves the
  setting, with ``stable`` as the default for the OTLP reporter and ``old`` for the
  others (Zipkin, X-Ray and log users keep the names their dashboards know).
* **The table, not the code paths, differs.** :class:`HttpNames` holds, per scheme, the
  tuple of keys each value is written under (empty when the scheme has no such tag), so
  the writers (the middleware and :mod:`~falcon_tracing_wsgi.outbound`) loop over
  precomputed tuples instead of branching on the scheme per request.
* **Readers accept both.** The encoders that lift tags into fields of their format (X-Ray's
  ``http`` block, Zipkin's ``remoteEndpoint``, the demo's waterfall) look a value up under
  each of its names with :func:`first_of`, so switching the scheme never loses a status,
  a method or a URL.
* The process-wide scheme for client spans (which are started from library code that
  has no configuration at hand) is set by ``bootstrap.install()`` with
  :func:`set_default`; the middleware takes its own from its configuration.

This module imports nothing from the package: everything that writes or reads HTTP tags
sits above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional

__all__ = ['OLD', 'STABLE', 'DUP', 'SCHEMES', 'HttpNames', 'names', 'default',
           'set_default', 'first_of', 'method_value', 'KNOWN_METHODS', 'OTHER_METHOD',
           'PEER_HOSTNAME', 'PEER_IPV4', 'PEER_IPV6', 'PEER_PORT',
           'HTTP_METHOD', 'HTTP_URL', 'HTTP_STATUS_CODE', 'REQUEST_METHOD',
           'RESPONSE_STATUS_CODE', 'URL_FULL', 'URL_PATH', 'URL_QUERY', 'URL_SCHEME',
           'SERVER_ADDRESS', 'SERVER_PORT', 'CLIENT_ADDRESS', 'NETWORK_PEER_ADDRESS',
           'NETWORK_PEER_PORT', 'NETWORK_PROTOCOL_VERSION', 'USER_AGENT', 'ERROR_TYPE',
           'METHOD_ORIGINAL', 'STATUS_CODE_NAMES', 'URL_NAMES']

OLD = 'old'
STABLE = 'stable'
DUP = 'dup'
SCHEMES = (OLD, STABLE, DUP)

# OpenTracing (opentracing.ext.tags) names.
HTTP_METHOD = 'http.method'
HTTP_URL = 'http.url'
HTTP_STATUS_CODE = 'http.status_code'
PEER_HOSTNAME = 'peer.hostname'
PEER_IPV4 = 'peer.ipv4'
PEER_IPV6 = 'peer.ipv6'
PEER_PORT = 'peer.port'

# OpenTelemetry's stable HTTP semantic conventions.
REQUEST_METHOD = 'http.request.method'
METHOD_ORIGINAL = 'http.request.method_original'
RESPONSE_STATUS_CODE = 'http.response.status_code'
URL_FULL = 'url.full'
URL_PATH = 'url.path'
URL_QUERY = 'url.query'
URL_SCHEME = 'url.scheme'
SERVER_ADDRESS = 'server.address'
SERVER_PORT = 'server.port'
CLIENT_ADDRESS = 'client.address'
NETWORK_PEER_ADDRESS = 'network.peer.address'
NETWORK_PEER_PORT = 'network.peer.port'
NETWORK_PROTOCOL_VERSION = 'network.protocol.version'
USER_AGENT = 'user_agent.original'
ERROR_TYPE = 'error.type'

#: Methods the stable conventions record as they are (RFC 9110, PATCH, QUERY); any other
#: becomes ``_OTHER`` with the original in ``http.request.method_original``, so a client
#: cannot create unbounded tag values by inventing methods. The conventions require a way
#: to override the list: ``FALCON_TRACING_HTTP_KNOWN_METHODS`` /
#: ``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS``.
KNOWN_METHODS = frozenset(('CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST',
                           'PUT', 'QUERY', 'TRACE'))
OTHER_METHOD = '_OTHER'

#: Every name a value may be found under, the stable one first (for readers).
STATUS_CODE_NAMES = (RESPONSE_STATUS_CODE, HTTP_STATUS_CODE)
URL_NAMES = (URL_FULL, HTTP_URL)


class HttpNames:
    """The keys one naming scheme writes each HTTP value under.

    Each attribute is a tuple of tag names (empty: the scheme does not write that value),
    so a writer does ``for key in names.status_code: tags[key] = code`` with no test of
    the scheme. ``old`` and ``stable`` say whether each family is written at all, for
    the values that are computed differently (the stable method is ``_OTHER`` for an
    unknown method; the stable server URL is split in parts, the old one is whole).

    Args:
        scheme: ``'old'``, ``'stable'`` or ``'dup'``.

    Raises:
        ValueError: another scheme.
    """

    __slots__ = ('scheme', 'old', 'stable', 'status_code', 'url', 'error_type',
                 'client_errors')

    def __init__(self, scheme: str) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f'unknown semantic-conventions scheme {scheme!r}; expected one '
                             f'of {", ".join(SCHEMES)}')
        self.scheme = scheme
        self.old = scheme in (OLD, DUP)
        self.stable = scheme in (STABLE, DUP)
        status: tuple[str, ...] = (HTTP_STATUS_CODE, RESPONSE_STATUS_CODE)
        url: tuple[str, ...] = (HTTP_URL, URL_FULL)
        pick = (slice(0, 1) if scheme == OLD else slice(1, 2) if scheme == STABLE
                else slice(0, 2))
        #: keys of the response status, the old one first
        self.status_code = status[pick]
        #: keys of a client span's full (redacted) URL, the old one first
        self.url = url[pick]
        #: the key of ``error.type``, or None (the old names have no such tag)
        self.error_type: Optional[str] = ERROR_TYPE if self.stable else None
        #: whether a client span's 4xx is an error: OpenTelemetry says yes (the request
        #: did not do what the caller wanted); the OpenTracing convention said no.
        self.client_errors = 400 if self.stable else 500

    def __repr__(self) -> str:
        return f'HttpNames({self.scheme!r})'


_BY_SCHEME = {scheme: HttpNames(scheme) for scheme in SCHEMES}
_default = _BY_SCHEME[OLD]
_known_methods = KNOWN_METHODS


def names(scheme: str) -> HttpNames:
    """The (shared, immutable) :class:`HttpNames` of ``scheme``.

    Raises:
        ValueError: an unknown scheme.
    """
    found = _BY_SCHEME.get(scheme)
    if found is None:
        return HttpNames(scheme)  # raises with the list of schemes
    return found


def default() -> HttpNames:
    """The process-wide scheme for spans started without a configuration (client spans)."""
    return _default


def set_default(scheme: str, known_methods: Optional[Iterable[str]] = None) -> None:
    """Set the process-wide scheme (``bootstrap.install()`` does, from the configuration).

    Args:
        scheme: ``'old'``, ``'stable'`` or ``'dup'``.
        known_methods: the methods :func:`method_value` keeps (default
            :data:`KNOWN_METHODS`).

    Raises:
        ValueError: an unknown scheme.
    """
    global _default, _known_methods
    _default = names(scheme)
    _known_methods = KNOWN_METHODS if known_methods is None else frozenset(known_methods)


def method_value(method: str, known: Optional[frozenset[str]] = None) -> str:
    """The stable ``http.request.method`` of a request method: itself when it is one of
    ``known`` (default: the process-wide list), else ``_OTHER``."""
    return method if method in (_known_methods if known is None else known) \
        else OTHER_METHOD


def first_of(tags: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of ``keys`` present in ``tags`` (None when none is)."""
    for key in keys:
        value = tags.get(key)
        if value is not None:
            return value
    return None
