"""Outgoing calls: propagate the active trace and describe the call as a CLIENT span.

Everything here uses only the OpenTracing 2.x API, so it works with *any* tracer
(ours, Jaeger's, the ``MockTracer``), and the tracer is looked up when a call is made,
never when a module is imported or an object is built: a tracer installed after
gunicorn forks is the one that is used.

Public helpers:

:func:`inject_headers`
    Write the active span's context into the headers of an outgoing request, for any
    HTTP client. It never raises: when the tracer fails the headers go out untraced.

:func:`redact_url`
    The one place that decides which parts of a URL are too secret for a tag:
    query (and fragment: ``#access_token=``) values whose *parameter name* matches a
    secret-looking name (:data:`DEFAULT_REDACTED_NAMES`, case-insensitive; see
    ``_redact`` for how short and long names match) and any ``user:password@`` part.
    The same rule redacts URLs inside the exception message and stack recorded on a
    failed call's span.

:func:`start_client_span` / :func:`finish_client_span`
    The CLIENT span of every client integration (``requests``, ``httpx``, ``urllib3``),
    usable directly to instrument another client (``http.client``, ...): tag names, URL
    redaction and error recording are decided here once, for all of them. The span is
    named ``HTTP {METHOD}``, never after the URL path, which would give every distinct
    URL its own operation name. A span that must outlive the call that started it (a
    streamed response, finished when its body is closed) is started with
    ``finish_on_close=False``: the call deactivates it by closing the scope, and later
    passes the *span* to :func:`finish_client_span`. Keeping such a span active until
    the body is closed would leave it active for unrelated work, and two responses
    closed out of order would corrupt the active-span stack.

Decisions:

* Only our own faults are swallowed: a tracer error is logged at debug level and the
  call proceeds untraced; the HTTP client's own exceptions are recorded on the span
  and re-raised unchanged by the integrations.
* Error details are logged as *strings* (``error.kind`` is the class name, ``stack`` a
  formatted traceback) rather than the objects ``opentracing.Span.__exit__`` logs, so
  that any reporter can encode them and no traceback (with its frames) is kept alive.
* The client span's scope is closed even if code run during the call (a transport, a
  hook) left a scope of its own open: the manager is reset to its state before the call
  and the span finished (``tracer.scope.scope_resetter``), instead of ``close()`` doing
  nothing and the span never being reported.
* A 5xx status marks the span as an error; a 4xx does not (the call worked; the
  request was refused), matching the OpenTracing semantic conventions. With
  OpenTelemetry's stable HTTP conventions (``FALCON_TRACING_HTTP_SEMCONV`` /
  ``OTEL_SEMCONV_STABILITY_OPT_IN``, see ``_semconv.py``) a 4xx is an error too, as they
  say for client spans.
* Tag names follow the process-wide scheme ``bootstrap.install()`` sets
  (:func:`falcon_tracing_wsgi._semconv.default`): OpenTracing's ``http.method``,
  ``http.url``, ``http.status_code``, ``peer.*``; the stable ``http.request.method``,
  ``url.full`` (redacted the same way), ``server.address``/``server.port``,
  ``http.response.status_code`` and ``error.type`` (the exception's class name, or the
  status code for a 4xx/5xx); or both.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Optional, Union
from urllib.parse import urlsplit, urlunsplit

import opentracing
from opentracing import Format
from opentracing.ext import tags

from . import _semconv
from ._redact import REDACTED as _REDACTED
from ._redact import (DEFAULT_REDACT_QUERY, DEFAULT_SECRET, Secret, compile_names,
                      redact_query, redact_text)
from .tracer.scope import scope_resetter

__all__ = ['DEFAULT_REDACTED_NAMES', 'REDACTED', 'inject_headers', 'redact_url',
           'start_client_span', 'finish_client_span']

_log = logging.getLogger(__name__)

#: Query parameter name fragments (lower case) whose values :func:`redact_url` hides.
#: Deliberately broad: hiding a harmless ``monkey=`` value costs little, leaking a
#: token into a tracing backend costs a lot.
DEFAULT_REDACTED_NAMES = DEFAULT_REDACT_QUERY
#: What a redacted value is replaced with.
REDACTED = _REDACTED

_DEFAULT_PORTS = {'http': 80, 'https': 443}
_STACK_LIMIT = 30  # frames; a recursion error must not produce a megabyte of tag text


def inject_headers(
    headers: MutableMapping[str, str],
    span: Optional[opentracing.Span] = None,
    tracer: Optional[opentracing.Tracer] = None,
) -> MutableMapping[str, str]:
    """Write a span's context into the headers of an outgoing HTTP request.

    Args:
        headers: the outgoing request's headers; changed in place.
        span: the span the next service should continue from; default: the tracer's
            active span.
        tracer: the tracer whose propagation format is used; default: the global tracer
            (``opentracing.global_tracer()``) at the time of the call.

    Returns:
        ``headers`` itself, unchanged when there is no span or the tracer failed, so the
        call can be used inline: ``requests.get(url, headers=inject_headers({}))``.
    """
    try:
        if tracer is None:
            tracer = opentracing.global_tracer()
        if span is None:
            span = tracer.active_span
            if span is None:
                return headers
        # types-opentracing says dict; the API accepts any mutable mapping.
        tracer.inject(span.context, Format.HTTP_HEADERS, headers)  # type: ignore[arg-type]
    except Exception:  # never let tracing break the outgoing call
        _log.debug('could not inject the trace context into outgoing headers', exc_info=True)
    return headers


def redact_url(url: str, names: Iterable[str] = DEFAULT_REDACTED_NAMES,
               replacement: str = REDACTED) -> str:
    """Return ``url`` with secret-looking parts replaced, for use as a tag value.

    A query or fragment value is replaced when its parameter name (percent-decoded,
    compared in lower case) matches one of ``names``; parameters without ``=`` and all
    other values are kept byte for byte. A ``user:password@`` part is replaced as a whole,
    because the user name is often the secret (``https://<token>@host/``).

    Args:
        url: an absolute or relative URL.
        names: lower-case name fragments; default :data:`DEFAULT_REDACTED_NAMES`.
        replacement: the text written instead of each secret.

    Returns:
        The redacted URL; ``url`` itself when nothing needed hiding, and just
        ``replacement`` when the URL cannot be parsed (it may hold anything).
    """
    # PERF: most URLs have neither a query, a fragment nor user info; skip parsing them.
    if '?' not in url and '@' not in url and '#' not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[' in the host
        return replacement
    netloc = parts.netloc
    if '@' in netloc:
        netloc = replacement + '@' + netloc.rpartition('@')[2]
    secret = _secret(names)
    query = redact_query(parts.query, secret, replacement)
    fragment = redact_query(parts.fragment, secret, replacement)
    if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _secret(names: Iterable[str]) -> Optional[Secret]:
    # PERF: the defaults are compiled once.
    return DEFAULT_SECRET if names is DEFAULT_REDACTED_NAMES else compile_names(names)


def start_client_span(
    method: str,
    url: str,
    component: str,
    tracer: Optional[opentracing.Tracer] = None,
    redact: Iterable[str] = DEFAULT_REDACTED_NAMES,
    finish_on_close: bool = True,
) -> Optional[opentracing.Scope]:
    """Start and activate a CLIENT span for one outgoing HTTP request.

    The span is a child of the active span (a root span when there is none) and is
    made active, so work done while the request is in flight - and the headers that
    :func:`inject_headers` writes - refer to it.

    Args:
        method: the HTTP method; upper-cased into the span name ``HTTP {METHOD}``.
        url: the absolute request URL; redacted for ``http.url``, parsed for ``peer.*``.
        component: the ``component`` tag (``'requests'``, ``'urllib3'``, ...).
        tracer: default: the global tracer at the time of the call.
        redact: query parameter name fragments passed to :func:`redact_url`.
        finish_on_close: ``False`` for a span that outlives the scope: closing the scope
            then only deactivates the span, which is finished by passing ``scope.span``
            to :func:`finish_client_span`.

    Returns:
        The active scope, to be handed to :func:`finish_client_span` exactly once (or,
        with ``finish_on_close=False``, closed by the caller, its span handed over);
        ``None`` when the tracer failed (the request should then go out untraced).
    """
    try:
        if tracer is None:
            tracer = opentracing.global_tracer()
        method = (method or 'GET').upper()
        names = _semconv.default()
        span_tags: dict[str, Any] = {
            tags.SPAN_KIND: tags.SPAN_KIND_RPC_CLIENT,
            tags.COMPONENT: component,
        }
        redacted = redact_url(url, redact)
        for key in names.url:
            span_tags[key] = redacted
        if names.old:
            span_tags[tags.HTTP_METHOD] = method
            _add_peer_tags(url, span_tags)
        if names.stable:
            stable_method = _semconv.method_value(method)
            span_tags[_semconv.REQUEST_METHOD] = stable_method
            if stable_method != method:
                span_tags[_semconv.METHOD_ORIGINAL] = method
            _add_server_tags(url, span_tags)
        return tracer.start_active_span('HTTP ' + method, tags=span_tags,
                                        finish_on_close=finish_on_close)
    except Exception:
        _log.debug('could not start a client span', exc_info=True)
        return None


def finish_client_span(scope: Union[opentracing.Scope, opentracing.Span],
                       status_code: Optional[int] = None,
                       error: Optional[BaseException] = None,
                       redact: Iterable[str] = DEFAULT_REDACTED_NAMES) -> None:
    """Record the outcome of a request on its CLIENT span, then finish and deactivate it.

    Args:
        scope: what :func:`start_client_span` returned (the scope is closed), or the
            span of a scope started with ``finish_on_close=False`` and already closed
            (the span is finished).
        status_code: the response status, when a response arrived.
        error: the exception the client raised, when it raised one. Only
            :class:`Exception` subclasses mark the span as an error; an interrupt
            (``KeyboardInterrupt``) just finishes it. URLs in its message and stack
            are redacted like ``http.url`` (a failed call's message usually quotes it).
        redact: query parameter names, as for :func:`start_client_span`.
    """
    end: Callable[[], None]
    if isinstance(scope, opentracing.Scope):
        span, end = scope.span, functools.partial(_deactivate, scope)
    else:
        span, end = scope, scope.finish
    try:
        names = _semconv.default()
        if status_code is not None:
            for key in names.status_code:
                span.set_tag(key, status_code)
            if status_code >= names.client_errors:
                span.set_tag(tags.ERROR, True)
                if names.error_type is not None and error is None:
                    span.set_tag(names.error_type, str(status_code))
        if isinstance(error, Exception):
            span.set_tag(tags.ERROR, True)
            if names.error_type is not None:
                span.set_tag(names.error_type, type(error).__qualname__)
            secret = _secret(redact)
            span.log_kv({
                'event': tags.ERROR,
                'error.kind': type(error).__name__,
                'message': redact_text(str(error), secret),
                'stack': redact_text(''.join(traceback.format_exception(
                    type(error), error, error.__traceback__, limit=_STACK_LIMIT)), secret),
            })
    except Exception:
        _log.debug('could not record the outcome on a client span', exc_info=True)
    finally:
        try:
            end()
        except Exception:
            _log.debug('could not finish a client span', exc_info=True)


def _add_server_tags(url: str, span_tags: dict[str, Any]) -> None:
    """``server.address`` and ``server.port`` (the scheme's default when the URL has none)."""
    parts = urlsplit(url)
    host = parts.hostname
    if host:
        span_tags[_semconv.SERVER_ADDRESS] = host
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:  # a port out of range: the client will complain, not us
            port = None
        if port:
            span_tags[_semconv.SERVER_PORT] = port


def _deactivate(scope: opentracing.Scope) -> None:
    """Close the client span's scope, even when the call left a scope of its own open."""
    manager = scope.manager
    if manager.active is scope:
        scope.close()  # the usual case
        return
    # NOTE: close() does nothing once the scope is not the active one: the client span
    # would never finish and the leaked scope would stay active (keeping every later
    # span alive). Reset the manager to its state before the call, then finish.
    scope_resetter(manager)(scope)
    scope.span.finish()


def _add_peer_tags(url: str, span_tags: dict[str, Any]) -> None:
    parts = urlsplit(url)
    host = parts.hostname
    if host:
        span_tags[tags.PEER_HOSTNAME] = host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            pass  # a name, not an IP literal
        else:
            key = tags.PEER_HOST_IPV4 if address.version == 4 else tags.PEER_HOST_IPV6
            span_tags[key] = str(address)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port out of range: the client will complain, not us
        port = None
    if port:
        span_tags[tags.PEER_PORT] = port
