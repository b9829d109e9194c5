"""Configuration: read once, validated once, frozen.

Every setting has one field on :class:`TracingConfig`, one ``FALCON_TRACING_*`` environment
variable and, where OpenTelemetry already has a variable that means the same thing, that
variable as a fallback. Precedence is: keyword argument > ``FALCON_TRACING_*`` > ``OTEL_*``
> default.

This module is the only place in the package that reads ``os.environ``, and it does so
only when :meth:`TracingConfig.from_env` is called (at startup, never per request). A bad
value raises :class:`ConfigError` naming the variable, the value and what is accepted, so
a misconfigured service fails at boot instead of running untraced. An unknown
``FALCON_TRACING_*`` variable is warned about with the closest valid name, because a typo
in an environment variable is otherwise silent.

An ``OTEL_*`` fallback follows OpenTelemetry's rules for its own variables, since the same
environment often configures OpenTelemetry SDKs too: an enum value we do not know
(``OTEL_TRACES_SAMPLER=xray``, an ``OTEL_PROPAGATORS`` entry such as ``ottrace``) is
warned about and ignored instead of stopping startup, and an invalid
``OTEL_TRACES_SAMPLER_ARG`` is warned about and ignored.

**Sampling** is two settings: the sampler (``FALCON_TRACING_SAMPLER``, else
``OTEL_TRACES_SAMPLER``; OpenTelemetry's names) picks the rule, and the rate
(``FALCON_TRACING_SAMPLE_RATE``, else ``OTEL_TRACES_SAMPLER_ARG``) is the ratio of the
``traceidratio`` samplers. The default sampler is ``parentbased_traceidratio``, which with
the default rate ``1.0`` is OpenTelemetry's default ``parentbased_always_on``, so a rate
alone keeps meaning what it always meant. When the two disagree, the precedence rule
above decides: a ``FALCON_TRACING_SAMPLE_RATE`` given with a constant
``OTEL_TRACES_SAMPLER`` (``always_on``/``always_off``, parent-based or not) turns that
sampler into its ``traceidratio`` form; given with a constant ``FALCON_TRACING_SAMPLER``
it is a contradiction in our own settings and a :class:`ConfigError`; an
``OTEL_TRACES_SAMPLER_ARG`` is ignored, with a warning, unless the sampler takes a ratio
(as OpenTelemetry ignores it).

The table of variables in README.rst is checked against :data:`SETTINGS` by the tests.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ._redact import DEFAULT_REDACT_QUERY
from ._semconv import KNOWN_METHODS

__all__ = ['TracingConfig', 'ConfigError', 'ExcludeRule', 'SETTINGS', 'ENV_PREFIX',
           'PROPAGATION_FORMATS', 'DEFAULT_PROPAGATION', 'REPORTERS', 'SAMPLERS',
           'HTTP_SEMCONV', 'SCOPE_MANAGERS', 'TRACERS', 'APP_ENV', 'OTLP_PROTOCOLS',
           'DEFAULT_OTLP_ENDPOINT', 'app_target', 'shown_url']

_log = logging.getLogger(__name__)

ENV_PREFIX = 'FALCON_TRACING_'

#: Propagation format names accepted by ``FALCON_TRACING_PROPAGATION``.
PROPAGATION_FORMATS = ('b3', 'b3single', 'w3c', 'baggage', 'jaeger', 'xray')
#: ``OTEL_PROPAGATORS`` names and the format each one means here.
_OTEL_PROPAGATORS = {'tracecontext': 'w3c', 'baggage': 'baggage', 'b3': 'b3single',
                     'b3multi': 'b3', 'jaeger': 'jaeger', 'xray': 'xray'}
REPORTERS = ('zipkin', 'otlp', 'log', 'xray', 'none')
#: ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` values. The otlp reporter speaks the two HTTP
#: ones; ``grpc`` is accepted here because the otel tracer's SDK exporter may use it.
OTLP_PROTOCOLS = ('http/protobuf', 'http/json', 'grpc')
#: Where the otlp reporter posts when no endpoint is configured (OpenTelemetry's default).
DEFAULT_OTLP_ENDPOINT = 'http://localhost:4318/v1/traces'
#: ``FALCON_TRACING_SAMPLER``/``OTEL_TRACES_SAMPLER`` values (OpenTelemetry's names).
SAMPLERS = ('parentbased_traceidratio', 'parentbased_always_on', 'parentbased_always_off',
            'traceidratio', 'always_on', 'always_off')
_RATIO_SAMPLERS = ('parentbased_traceidratio', 'traceidratio')
#: The package's default: follow the parent, else sample ``sample_rate`` of new traces.
_DEFAULT_SAMPLER = 'parentbased_traceidratio'
#: ``FALCON_TRACING_HTTP_SEMCONV``: OpenTracing's HTTP tag names, OpenTelemetry's stable
#: ones, or both (see ``_semconv.py``).
HTTP_SEMCONV = ('old', 'stable', 'dup')
#: The default propagation formats; also what an ``OTEL_PROPAGATORS`` of only unknown
#: names falls back to.
DEFAULT_PROPAGATION = ('b3', 'w3c', 'baggage')
SCOPE_MANAGERS = ('contextvars', 'threadlocal', 'gevent')
#: ``FALCON_TRACING_TRACER``: this package's tracer, or an OpenTelemetry SDK behind the shim.
TRACERS = ('builtin', 'otel')

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_METHOD = re.compile(r'[A-Z]+')


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the variable or option."""


class ExcludeRule(NamedTuple):
    """One ``[METHOD ]/path[*]`` exclusion rule, matched against the whole path."""

    method: Optional[str]  # None matches every method
    path: str              # without the trailing '*' when ``prefix`` is true
    prefix: bool


# --------------------------------------------------------------------------- parsers
# Each parser takes the raw text and returns the value, or raises ValueError with a short
# "expected ..." text; _parse() adds the variable name and the value to the message.

def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ('1', 'true', 'yes', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'off'):
        return False
    raise ValueError('expected one of true, false, 1, 0, yes, no, on, off')


def _number(kind: type, low: float, high: Optional[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f'expected {_describe(kind, low, high)}') from None
        if value != value or value < low or (high is not None and value > high):
            raise ValueError(f'expected {_describe(kind, low, high)}')
        return value
    return parse


def _describe(kind: type, low: float, high: Optional[float]) -> str:
    noun = 'a whole number' if kind is int else 'a number'
    return f'{noun} from {low} to {high}' if high is not None else f'{noun} >= {low}'


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(',') if part.strip())


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f'expected one of {", ".join(options)}')
        return value
    return parse


def _parse_propagation(text: str) -> tuple[str, ...]:
    names = tuple(name.lower() for name in _split(text))
    unknown = [name for name in names if name not in PROPAGATION_FORMATS]
    if unknown or not names:
        raise ValueError(f'expected a comma list of {", ".join(PROPAGATION_FORMATS)}')
    return tuple(dict.fromkeys(names))


class _Ignored:
    """What an ``OTEL_*`` parser returns for a value OpenTelemetry would ignore: the
    setting then keeps its default (the parser has warned)."""


_IGNORED = _Ignored()


def _warn(message: str, stacklevel: int = 5) -> None:
    # stacklevel 5: _warn < parser < _parse < from_env < the caller of from_env
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


def _parse_otel_propagators(text: str) -> Any:
    """``OTEL_PROPAGATORS``: unknown entries are warned about and skipped, as
    OpenTelemetry does; when none is left the default formats are used."""
    names = [name.lower() for name in _split(text)]
    if names == ['none']:
        return ()
    unknown = [name for name in names if name not in _OTEL_PROPAGATORS]
    known = [name for name in names if name in _OTEL_PROPAGATORS]
    if unknown:
        fallback = '' if known else (
            f'; none is left, so the default {",".join(DEFAULT_PROPAGATION)} is used')
        _warn(f'OTEL_PROPAGATORS={text!r}: skipping the propagator(s) '
              f'{", ".join(unknown)} this package does not know (known: '
              f'{", ".join(_OTEL_PROPAGATORS)}, none){fallback}')
    if not known:
        return _IGNORED
    return tuple(dict.fromkeys(_OTEL_PROPAGATORS[name] for name in known))


def _parse_otel_sampler(text: str) -> Any:
    """``OTEL_TRACES_SAMPLER``: an unknown sampler is warned about and ignored (the
    default is used), as OpenTelemetry SDKs do; other SDKs know samplers this package
    has not (``jaeger_remote``, ``xray``)."""
    value = text.strip().lower()
    if value in SAMPLERS:
        return value
    _warn(f'OTEL_TRACES_SAMPLER={text!r} is not a sampler this package knows '
          f'(known: {", ".join(SAMPLERS)}); using the default {_DEFAULT_SAMPLER}')
    return _IGNORED


def _parse_otel_sampler_arg(text: str) -> Any:
    """``OTEL_TRACES_SAMPLER_ARG``: an invalid ratio is warned about and ignored, as
    the OpenTelemetry specification requires."""
    try:
        return _number(float, 0.0, 1.0)(text)
    except ValueError as exc:
        _warn(f'OTEL_TRACES_SAMPLER_ARG={text!r} is ignored: {exc}')
        return _IGNORED


def _parse_otel_semconv(text: str) -> Any:
    """``OTEL_SEMCONV_STABILITY_OPT_IN``: a comma list of domains; ``http/dup`` means
    both names, ``http`` the stable ones. Other domains (``database``, ...) are not ours
    and are ignored without a warning: the variable is shared with OpenTelemetry's
    instrumentations."""
    domains = {name.lower() for name in _split(text)}
    if 'http/dup' in domains:
        return 'dup'
    if 'http' in domains:
        return 'stable'
    return _IGNORED


def _parse_methods(text: str) -> tuple[str, ...]:
    # Case-sensitive, as the conventions say: 'get' is not 'GET'.
    methods = _split(text)
    if not methods or not all(_HEADER_NAME.fullmatch(method) for method in methods):
        raise ValueError('expected a comma list of HTTP methods such as GET,POST,PURGE')
    return tuple(dict.fromkeys(methods))


def _parse_exclude(text: str) -> tuple[ExcludeRule, ...]:
    rules = []
    for item in _split(text):
        method_text, _, path = item.rpartition(' ')
        method = method_text.strip().upper() or None
        if method is not None and not _METHOD.fullmatch(method):
            raise ValueError(f'rule {item!r}: expected "[METHOD ]/path" such as "GET /healthz"')
        if not path.startswith('/') or '*' in path[:-1]:
            raise ValueError(f'rule {item!r}: expected "[METHOD ]/path" rules whose path '
                             'starts with "/" and may only end with "*" (prefix match)')
        prefix = path.endswith('*')
        rules.append(ExcludeRule(method, path[:-1] if prefix else path, prefix))
    return tuple(rules)


def _parse_regexes(text: str) -> tuple[str, ...]:
    patterns = _split(text)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f'pattern {pattern!r} is not a regular expression: {exc}') from None
    return patterns


def _parse_header_names(text: str) -> tuple[str, ...]:
    names = tuple(name.lower() for name in _split(text))
    for name in names:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f'{name!r} is not an HTTP header name')
    return tuple(dict.fromkeys(names))


def _parse_optional_header(text: str) -> Optional[str]:
    name = text.strip()
    if not name:
        return None
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError('expected an HTTP header name such as X-Trace-Id, or empty for none')
    return name


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.lower() for name in _split(text)))


_URL_EXAMPLE = 'http://127.0.0.1:9411/api/v2/spans'
# Headers the Zipkin sender writes itself (zipkin/sender.py _RESERVED_HEADERS, and b3 /
# X-B3-*, which keep its own uploads untraced). Repeated here because configuration sits
# below the exporters; a test checks that both refuse the same names.
_SENDER_HEADERS = frozenset(('content-type', 'content-length', 'content-encoding',
                             'transfer-encoding', 'host', 'b3'))


def _parse_url(text: str) -> Optional[str]:
    """An http(s) collector URL that the sender can use as it is, or None when empty.

    Everything the sender would refuse later (a port out of range, credentials in the
    URL, no host) is refused here, so the message names the variable at startup.
    """
    url = text.strip()
    if not url:
        return None
    expected = f'expected an http:// or https:// URL such as {_URL_EXAMPLE}'
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(f'{expected} (no spaces or control characters)')
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # an unbalanced "[" of an IPv6 literal
        raise ValueError(expected) from None
    if parts.scheme not in ('http', 'https') or not hostname:
        raise ValueError(expected)
    if '@' in parts.netloc:
        raise ValueError('credentials in the URL are not allowed; send them as a header '
                         'with FALCON_TRACING_ZIPKIN_HEADERS, e.g. "Authorization=Bearer ..."')
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f'the port must be a number from 1 to 65535 ({expected})')
    return url


def shown_url(url: Optional[str]) -> str:
    """``url`` safe for a log line or an error message: no credentials, no query.

    The user information (``user:password@``) and the query (which may carry a token)
    are replaced by ``***``; the rest is kept so that the message still says where.
    """
    if not url:
        return ''
    shown = re.sub(r'(//)[^/?#]*@', r'\1***@', url, count=1)
    query = shown.find('?')
    return shown if query < 0 else shown[:query] + '?***'


def _shown_secret(text: str) -> str:
    return f'<{len(text)} characters, not shown: the value may hold credentials>'


def _parse_key_values(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _split(text):
        key, sep, value = item.partition('=')
        if not sep or not _HEADER_NAME.fullmatch(key.strip()):
            raise ValueError('expected a comma list of name=value pairs')
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _parse_otel_key_values(text: str) -> tuple[tuple[str, str], ...]:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``key=value`` pairs whose values are percent-encoded."""
    return tuple((key, unquote(value)) for key, value in _parse_key_values(text))


def _parse_otlp_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: W3C-baggage-like ``name=value`` pairs.

    Names and values are percent-decoded (OpenTelemetry's exporter specification), names
    must be HTTP header names. The error messages name the entry by position and never
    show a value: these headers carry API keys.
    """
    pairs = []
    for position, item in enumerate(text.split(','), 1):
        if not item.strip():
            continue
        raw_name, sep, raw_value = item.partition('=')
        name = unquote(raw_name.strip())
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f'entry {position} is not name=value with an HTTP header name '
                             '(values are not shown: they may be secrets)')
        value = unquote(raw_value.strip())
        if any(c in value for c in '\r\n\0'):
            raise ValueError(f'the value of header {name!r} holds a line break or NUL')
        if name.lower() in _SENDER_HEADERS or name.lower().startswith('x-b3-'):
            raise ValueError(f'header {name!r} is set by the exporter itself')
        pairs.append((name, value))
    return tuple(pairs)


def _otlp_url(text: str) -> tuple[str, str, str, str, str]:
    url = text.strip()
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ('http', 'https') or not parts.hostname or not port_ok:
        raise ValueError('expected an http:// or https:// URL such as '
                         'http://collector:4318/v1/traces')
    if parts.username is not None or parts.password is not None:
        raise ValueError('credentials do not belong in the URL; put them in '
                         'OTEL_EXPORTER_OTLP_HEADERS')
    return parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment


def _parse_otlp_endpoint(text: str) -> str:
    """A per-signal OTLP endpoint: used as given, an empty path meaning ``/``."""
    scheme, netloc, path, query, _ = _otlp_url(text)
    return urlunsplit((scheme, netloc, path or '/', query, ''))


def _parse_otlp_base(text: str) -> str:
    """``OTEL_EXPORTER_OTLP_ENDPOINT``: a base URL that ``v1/traces`` is appended to."""
    scheme, netloc, path, query, _ = _otlp_url(text)
    return urlunsplit((scheme, netloc, (path if path.endswith('/') else path + '/')
                       + 'v1/traces', query, ''))


def _parse_pem_file(text: str) -> Optional[str]:
    """A PEM file path (certificate or key); read when the reporter is built."""
    path = text.strip()
    if not path:
        return None
    if not os.path.isfile(path):
        raise ValueError('expected the path of a readable PEM file; there is no such file')
    return path


def _parse_milliseconds(text: str) -> float:
    """An OpenTelemetry timeout (milliseconds), as seconds."""
    return float(_number(int, 10, 600_000)(text)) / 1000.0


def _parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``name=value`` pairs that the Zipkin sender can send as they are.

    The messages name a header, never show a value: the value is often a credential.
    """
    pairs = _parse_key_values(text)
    for name, value in pairs:
        lowered = name.lower()
        if lowered in _SENDER_HEADERS or lowered.startswith('x-b3-'):
            raise ValueError(f'header {name!r} is set by the sender itself')
        if any(char in value for char in '\r\n\0'):
            raise ValueError(f'the value of header {name!r} holds a line break or NUL')
    return pairs


def _parse_text(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError('expected a non-empty name')
    return value


def _parse_log_file(text: str) -> Optional[str]:
    """A file the log reporter can create or append to, or None (standard error).

    A directory, or a file in a directory that does not exist, would fail only at the
    first batch (every span counted as failed); refused at startup instead.
    """
    path = text.strip()
    if not path:
        return None
    if os.path.isdir(path):
        raise ValueError('expected a file path; this is a directory')
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f'the directory {parent!r} does not exist')
    return path


def _parse_auto_bool(text: str) -> Optional[bool]:
    if text.strip().lower() == 'auto':
        return None
    try:
        return _parse_bool(text)
    except ValueError:
        raise ValueError('expected auto, or one of true, false, 1, 0, yes, no, on, off') \
            from None


_DAEMON_HOST = re.compile(r'[A-Za-z0-9.-]+')


def _parse_daemon_address(text: str) -> str:
    """The UDP ``host:port`` of an X-Ray daemon address, in either of the SDKs' forms.

    ``host:port`` (UDP and TCP on one address), or ``tcp:host:port udp:host:port`` in
    either order. An IPv6 host is written in brackets: ``[::1]:2000``.
    """
    parts = text.split()
    expected = ('expected host:port such as 127.0.0.1:2000, or '
                '"tcp:host:port udp:host:port"')
    if len(parts) == 2:
        kinds = {part.partition(':')[0].lower(): part.partition(':')[2] for part in parts}
        if set(kinds) != {'tcp', 'udp'}:
            raise ValueError(expected)
        _split_host_port(kinds['tcp'], expected)
        address = kinds['udp']
    elif len(parts) == 1:
        address = parts[0]
    else:
        raise ValueError(expected)
    host, port = _split_host_port(address, expected)
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def _split_host_port(address: str, expected: str) -> tuple[str, int]:
    if address.startswith('['):
        host, sep, port_text = address[1:].partition(']:')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expected) from None
    else:
        host, sep, port_text = address.rpartition(':')
        if not _DAEMON_HOST.fullmatch(host):
            raise ValueError(expected)
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(expected)
    return host, int(port_text)


_EXPORTER_NAME = re.compile(r'[A-Za-z0-9_.-]+')


def _parse_exporters(text: str) -> tuple[str, ...]:
    names = _parse_names(text)
    if not names or not all(_EXPORTER_NAME.fullmatch(name) for name in names) or (
            'none' in names and len(names) > 1):
        raise ValueError('expected a comma list of OpenTelemetry span exporter names '
                         '(console, otlp, zipkin, ...) or none')
    return names


class _Setting(NamedTuple):
    field: str
    env: str
    parse: Callable[[str], Any]
    doc: str
    #: The first fallback variable (OpenTelemetry's), if any.
    otel: Optional[str] = None
    otel_parse: Optional[Callable[[str], Any]] = None
    #: Further fallbacks after ``otel``, in order: (variable, parser or None for ``parse``).
    #: OpenTelemetry's variables often come in pairs, the specific one first.
    otel_more: tuple[tuple[str, Optional[Callable[[str], Any]]], ...] = ()
    #: How an error message shows the raw value (a setting that can hold a secret
    #: shows less of it, or nothing).
    show: Callable[[str], str] = repr

    @property
    def fallbacks(self) -> tuple[str, ...]:
        """The fallback variables (``otel``, then ``otel_more``) in order; maybe none."""
        if self.otel is None:
            return ()
        return (self.otel,) + tuple(name for name, _ in self.otel_more)


#: Every environment variable, in README order. ``field`` is the TracingConfig field and
#: the keyword-argument name.
SETTINGS: tuple[_Setting, ...] = (
    _Setting('service_name', 'FALCON_TRACING_SERVICE_NAME', _parse_text,
             'Service name in every span (Zipkin localEndpoint.serviceName).',
             'OTEL_SERVICE_NAME'),
    _Setting('enabled', 'FALCON_TRACING_ENABLED', _parse_bool,
             'false turns tracing off: wrap() returns the app unchanged.',
             'OTEL_SDK_DISABLED', lambda text: not _parse_bool(text)),
    _Setting('tracer', 'FALCON_TRACING_TRACER', _choice(TRACERS),
             'builtin (this package\'s tracer) or otel (an OpenTelemetry SDK tracer provider '
             'behind the OpenTracing shim, configured by the OTEL_* variables; needs the '
             '[otel] extra).'),
    _Setting('otel_traces_exporter', 'FALCON_TRACING_OTEL_TRACES_EXPORTER', _parse_exporters,
             'With the otel tracer: the OpenTelemetry span exporters by entry-point name '
             '(console, otlp, zipkin, ...; each one installed) or none.',
             'OTEL_TRACES_EXPORTER'),
    _Setting('propagation', 'FALCON_TRACING_PROPAGATION', _parse_propagation,
             'Propagation formats, in extraction order: b3, b3single, w3c, baggage, jaeger, '
             'xray. '
             'Injection writes all of them.',
             'OTEL_PROPAGATORS', _parse_otel_propagators),
    _Setting('sampler', 'FALCON_TRACING_SAMPLER', _choice(SAMPLERS),
             'How a trace is decided, by OpenTelemetry\'s names: parentbased_traceidratio, '
             'parentbased_always_on, parentbased_always_off (follow an incoming decision '
             'when FALCON_TRACING_TRUST_INBOUND allows it, else decide a new trace), '
             'traceidratio, always_on, always_off (ignore incoming decisions). An unknown '
             'OTEL_TRACES_SAMPLER is warned about and ignored.',
             'OTEL_TRACES_SAMPLER', _parse_otel_sampler),
    _Setting('sample_rate', 'FALCON_TRACING_SAMPLE_RATE', _number(float, 0.0, 1.0),
             'Fraction of new traces to sample (0 to 1), the ratio of the traceidratio '
             'samplers.', 'OTEL_TRACES_SAMPLER_ARG', _parse_otel_sampler_arg),
    _Setting('sample_rate_limit', 'FALCON_TRACING_SAMPLE_RATE_LIMIT', _number(float, 0.0, None),
             'At most this many new traces per second per process (0: no limit).'),
    _Setting('tags', 'FALCON_TRACING_TAGS', _parse_key_values,
             'Tags added to every span of this process, e.g. "env=prod,region=eu-1" (the '
             'otlp reporter sends them as resource attributes). OTEL_RESOURCE_ATTRIBUTES '
             'values are percent-decoded.',
             'OTEL_RESOURCE_ATTRIBUTES', _parse_otel_key_values),
    _Setting('trust_inbound', 'FALCON_TRACING_TRUST_INBOUND', _parse_bool,
             'Follow the sampling and debug decision of incoming headers. Set false on an '
             'edge service so clients cannot force sampling.'),
    _Setting('trace_id_128bit', 'FALCON_TRACING_TRACE_ID_128BIT', _parse_bool,
             'New traces get 128-bit trace ids (false: 64-bit).'),
    _Setting('xray_ids', 'FALCON_TRACING_XRAY_IDS', _parse_auto_bool,
             'New trace ids start with the epoch seconds, as AWS X-Ray ids do. Default '
             '(auto): on when the xray propagation format or the xray reporter is chosen.'),
    _Setting('scope_manager', 'FALCON_TRACING_SCOPE_MANAGER', _choice(SCOPE_MANAGERS),
             'In-process context: contextvars (threads, gthread, asyncio), threadlocal, '
             'gevent.'),
    _Setting('exclude', 'FALCON_TRACING_EXCLUDE', _parse_exclude,
             'Comma list of "[METHOD ]/path" rules matched against the whole path; a '
             'trailing * matches a prefix. Example: "GET /healthz, /static/*".'),
    _Setting('exclude_patterns', 'FALCON_TRACING_EXCLUDE_PATTERNS', _parse_regexes,
             'Comma list of regular expressions searched in the path (OpenTelemetry '
             'semantics); requests that match are not traced.', 'OTEL_PYTHON_EXCLUDED_URLS'),
    _Setting('http_semconv', 'FALCON_TRACING_HTTP_SEMCONV', _choice(HTTP_SEMCONV),
             'HTTP tag names: old (OpenTracing: http.method, http.url, http.status_code, '
             'peer.*), stable (OpenTelemetry\'s stable HTTP semantic conventions: '
             'http.request.method, url.*, http.response.status_code, server.*, client.address, '
             'network.*, user_agent.original, error.type) or dup (both). Default: stable with '
             'the otlp reporter, else old. OTEL_SEMCONV_STABILITY_OPT_IN=http means stable, '
             'http/dup means dup.', 'OTEL_SEMCONV_STABILITY_OPT_IN', _parse_otel_semconv),
    _Setting('http_known_methods', 'FALCON_TRACING_HTTP_KNOWN_METHODS', _parse_methods,
             'With the stable HTTP names: the request methods recorded as they are '
             '(case-sensitive); any other is recorded as _OTHER, with the original in '
             'http.request.method_original.', 'OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS'),
    _Setting('capture_request_headers', 'FALCON_TRACING_CAPTURE_REQUEST_HEADERS',
             _parse_header_names,
             'Request headers recorded as http.request.header.<name> tags (allow-list). '
             'Authorization, Proxy-Authorization, Cookie and Set-Cookie are always redacted.'),
    _Setting('capture_response_headers', 'FALCON_TRACING_CAPTURE_RESPONSE_HEADERS',
             _parse_header_names,
             'Response headers recorded as http.response.header.<name> tags (allow-list).'),
    _Setting('redact_query', 'FALCON_TRACING_REDACT_QUERY', _parse_names,
             'Query parameters whose name matches one of these (case-insensitive; a name '
             'of under five letters matches a whole word, a longer one anywhere) have '
             'their value replaced by REDACTED in http.url and in recorded exception '
             'texts.'),
    _Setting('record_query', 'FALCON_TRACING_RECORD_QUERY', _parse_bool,
             'false drops the query string from http.url entirely.'),
    _Setting('response_trace_header', 'FALCON_TRACING_RESPONSE_TRACE_HEADER',
             _parse_optional_header,
             'Response header that carries the trace id (e.g. X-Trace-Id); empty: none.'),
    _Setting('reporter', 'FALCON_TRACING_REPORTER', _choice(REPORTERS),
             'zipkin (HTTP to FALCON_TRACING_ZIPKIN_URL), otlp (OTLP/HTTP to '
             'FALCON_TRACING_OTLP_ENDPOINT), log (Zipkin v2 JSON lines), xray (UDP to the '
             'X-Ray daemon) or none. Default: zipkin when a Zipkin URL is set, else otlp '
             'when an OTLP endpoint is set, else log.'),
    _Setting('zipkin_url', 'FALCON_TRACING_ZIPKIN_URL', _parse_url,
             'Zipkin v2 endpoint, e.g. http://127.0.0.1:9411/api/v2/spans. Credentials go '
             'in FALCON_TRACING_ZIPKIN_HEADERS, not in the URL.',
             'OTEL_EXPORTER_ZIPKIN_ENDPOINT', show=lambda text: repr(shown_url(text))),
    _Setting('zipkin_headers', 'FALCON_TRACING_ZIPKIN_HEADERS', _parse_headers,
             'Extra headers on every upload, e.g. "Authorization=Bearer abc". Error '
             'messages never show this value.', show=_shown_secret),
    _Setting('zipkin_gzip', 'FALCON_TRACING_ZIPKIN_GZIP', _parse_bool,
             'gzip the upload body.'),
    _Setting('otlp_endpoint', 'FALCON_TRACING_OTLP_ENDPOINT', _parse_otlp_endpoint,
             'OTLP/HTTP traces URL for the otlp reporter, used as given (default '
             f'{DEFAULT_OTLP_ENDPOINT}). OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: '
             '/v1/traces is appended to it.',
             'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
             otel_more=(('OTEL_EXPORTER_OTLP_ENDPOINT', _parse_otlp_base),),
             show=lambda text: repr(shown_url(text))),
    _Setting('otlp_protocol', 'FALCON_TRACING_OTLP_PROTOCOL', _choice(OTLP_PROTOCOLS),
             'http/protobuf or http/json for the otlp reporter (grpc needs '
             'FALCON_TRACING_TRACER=otel).',
             'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
             otel_more=(('OTEL_EXPORTER_OTLP_PROTOCOL', None),)),
    _Setting('otlp_headers', 'FALCON_TRACING_OTLP_HEADERS', _parse_otlp_headers,
             'Extra headers on every OTLP upload, W3C baggage style and percent-encoded, '
             'e.g. "x-honeycomb-team=abc,x-tenant=a%20b". Never shown in messages.',
             'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
             otel_more=(('OTEL_EXPORTER_OTLP_HEADERS', None),), show=_shown_secret),
    _Setting('otlp_compression', 'FALCON_TRACING_OTLP_COMPRESSION', _choice(('gzip', 'none')),
             'gzip or none: compression of the OTLP upload body.',
             'OTEL_EXPORTER_OTLP_TRACES_COMPRESSION',
             otel_more=(('OTEL_EXPORTER_OTLP_COMPRESSION', None),)),
    _Setting('otlp_certificate', 'FALCON_TRACING_OTLP_CERTIFICATE', _parse_pem_file,
             'PEM file of the certificate authorities trusted for an https OTLP endpoint '
             '(default: the system\'s).',
             'OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE',
             otel_more=(('OTEL_EXPORTER_OTLP_CERTIFICATE', None),)),
    _Setting('otlp_client_certificate', 'FALCON_TRACING_OTLP_CLIENT_CERTIFICATE',
             _parse_pem_file,
             'PEM file of the client certificate (chain) for mutual TLS with the OTLP '
             'endpoint; needs the client key.',
             'OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE',
             otel_more=(('OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE', None),)),
    _Setting('otlp_client_key', 'FALCON_TRACING_OTLP_CLIENT_KEY', _parse_pem_file,
             'PEM file of the private key of the OTLP client certificate.',
             'OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY',
             otel_more=(('OTEL_EXPORTER_OTLP_CLIENT_KEY', None),)),
    _Setting('otlp_timeout', 'FALCON_TRACING_OTLP_TIMEOUT', _number(float, 0.01, 600.0),
             'Connect and read timeout of one OTLP upload, in seconds (its OpenTelemetry '
             'fallbacks are in milliseconds).',
             'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', _parse_milliseconds,
             otel_more=(('OTEL_EXPORTER_OTLP_TIMEOUT', _parse_milliseconds),)),
    _Setting('xray_daemon_address', 'FALCON_TRACING_XRAY_DAEMON_ADDRESS', _parse_daemon_address,
             'UDP address of the X-Ray daemon for the xray reporter: host:port, or the SDKs\' '
             '"tcp:host:port udp:host:port". Fallback: AWS_XRAY_DAEMON_ADDRESS, the X-Ray '
             'SDKs\' variable.', 'AWS_XRAY_DAEMON_ADDRESS'),
    _Setting('log_file', 'FALCON_TRACING_LOG_FILE', _parse_log_file,
             'File the log reporter appends to (default: standard error).'),
    _Setting('queue_size', 'FALCON_TRACING_QUEUE_SIZE', _number(int, 1, None),
             'Finished spans held for export before new ones are dropped (and counted); '
             'FALCON_TRACING_QUEUE_BYTES bounds their size.'),
    _Setting('queue_bytes', 'FALCON_TRACING_QUEUE_BYTES', _number(int, 1024, None),
             'Bytes of encoded spans held for export before new ones are dropped (and '
             'counted).'),
    _Setting('span_attribute_count_limit', 'FALCON_TRACING_SPAN_ATTRIBUTE_COUNT_LIMIT',
             _number(int, 0, None),
             'Tags per span; a tag with a new key beyond it is dropped and counted '
             '(otel.dropped_attributes_count).',
             'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT',
             otel_more=(('OTEL_ATTRIBUTE_COUNT_LIMIT', None),)),
    _Setting('span_event_count_limit', 'FALCON_TRACING_SPAN_EVENT_COUNT_LIMIT',
             _number(int, 0, None),
             'Log records (events) per span; later ones are dropped and counted '
             '(otel.dropped_events_count), except an error record, which replaces the '
             'newest.', 'OTEL_SPAN_EVENT_COUNT_LIMIT'),
    _Setting('event_attribute_count_limit', 'FALCON_TRACING_EVENT_ATTRIBUTE_COUNT_LIMIT',
             _number(int, 0, None), 'Fields per log record; later ones are dropped.',
             'OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT'),
    _Setting('attribute_value_length_limit', 'FALCON_TRACING_ATTRIBUTE_VALUE_LENGTH_LIMIT',
             _number(int, 1, None),
             'Characters per tag value, tag key and span name, and per log record (keys '
             'and values together); longer text is cut.',
             'OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT',
             otel_more=(('OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT', None),)),
    _Setting('batch_size', 'FALCON_TRACING_BATCH_SIZE', _number(int, 1, None),
             'The most spans per upload (unset: only FALCON_TRACING_BATCH_BYTES limits it).'),
    _Setting('batch_bytes', 'FALCON_TRACING_BATCH_BYTES', _number(int, 1024, None),
             'The most bytes per upload; a larger span fails alone, and a batch the '
             'collector refuses as too large (413) is split.'),
    _Setting('flush_interval', 'FALCON_TRACING_FLUSH_INTERVAL', _number(float, 0.01, 3600.0),
             'Seconds between uploads when the batch is not full.'),
    _Setting('export_timeout', 'FALCON_TRACING_EXPORT_TIMEOUT', _number(float, 0.01, 600.0),
             'Connect and read timeout of one upload, in seconds.'),
    _Setting('max_retries', 'FALCON_TRACING_MAX_RETRIES', _number(int, 0, 100),
             'Retries of an upload after a connection error or a 5xx.'),
    _Setting('shutdown_timeout', 'FALCON_TRACING_SHUTDOWN_TIMEOUT', _number(float, 0.0, 600.0),
             'Deadline in seconds for the final flush at process exit.'),
)

_BY_FIELD = {setting.field: setting for setting in SETTINGS}
#: Fields never shown whole (repr): header values, and URLs (credentials and query).
_SECRET_FIELDS = frozenset(s.field for s in SETTINGS if s.show is _shown_secret)
_URL_FIELDS = frozenset(('zipkin_url', 'otlp_endpoint'))
_BY_ENV = {setting.env: setting for setting in SETTINGS}


@dataclasses.dataclass(frozen=True)
class TracingConfig:
    """All settings of one tracing setup. Build it with :meth:`from_env`.

    The fields are documented in :data:`SETTINGS` (and the README table). Four options
    exist only in code, because they are callables:

    Attributes:
        request_hook: ``hook(span, environ)`` called after the server span starts.
        response_hook: ``hook(span, environ, status, headers)`` called from
            ``start_response``.
        operation_name: ``func(environ) -> str`` naming the span of a non-Falcon app at
            the end of the request (a route template, never a raw path).
        component: the ``component`` tag of server spans.
    """

    service_name: str = 'unknown_service'
    enabled: bool = True
    tracer: str = 'builtin'
    otel_traces_exporter: tuple[str, ...] = ('otlp',)
    propagation: tuple[str, ...] = DEFAULT_PROPAGATION
    sampler: str = _DEFAULT_SAMPLER
    sample_rate: float = 1.0
    sample_rate_limit: float = 0.0
    tags: tuple[tuple[str, str], ...] = ()
    trust_inbound: bool = True
    trace_id_128bit: bool = True
    xray_ids: Optional[bool] = None
    scope_manager: str = 'contextvars'
    exclude: tuple[ExcludeRule, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    http_semconv: Optional[str] = None
    http_known_methods: tuple[str, ...] = tuple(sorted(KNOWN_METHODS))
    capture_request_headers: tuple[str, ...] = ()
    capture_response_headers: tuple[str, ...] = ()
    redact_query: tuple[str, ...] = DEFAULT_REDACT_QUERY
    record_query: bool = True
    response_trace_header: Optional[str] = None
    reporter: Optional[str] = None
    zipkin_url: Optional[str] = None
    # repr=False: header values are secrets (API keys) and must not reach a log line.
    zipkin_headers: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    zipkin_gzip: bool = False
    otlp_endpoint: Optional[str] = None
    otlp_protocol: str = 'http/protobuf'
    otlp_headers: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    otlp_compression: str = 'none'
    otlp_certificate: Optional[str] = None
    otlp_client_certificate: Optional[str] = None
    otlp_client_key: Optional[str] = None
    otlp_timeout: float = 10.0
    xray_daemon_address: str = '127.0.0.1:2000'
    log_file: Optional[str] = None
    queue_size: int = 65536
    queue_bytes: int = 16 * 1024 * 1024
    span_attribute_count_limit: int = 128
    span_event_count_limit: int = 128
    event_attribute_count_limit: int = 128
    attribute_value_length_limit: int = 4096
    batch_size: Optional[int] = None
    batch_bytes: int = 4 * 1024 * 1024
    flush_interval: float = 1.0
    export_timeout: float = 5.0
    max_retries: int = 2
    shutdown_timeout: float = 5.0
    request_hook: Optional[Callable[..., Any]] = None
    response_hook: Optional[Callable[..., Any]] = None
    operation_name: Optional[Callable[[Any], str]] = None
    component: str = 'wsgi'

    def __post_init__(self) -> None:
        # The settings the exporters would refuse with a bare ValueError are checked
        # here too, so a TracingConfig(...) built in code fails as early and as clearly.
        for name, check in (('zipkin_url', _parse_url),
                            ('xray_daemon_address', _parse_daemon_address)):
            value = getattr(self, name)
            if isinstance(value, str):
                _parse(check, f'option {name}', value, _BY_FIELD[name].show)
        if self.zipkin_headers:
            _parse(_parse_headers, 'option zipkin_headers',
                   ','.join(_rule_text(item) for item in self.zipkin_headers),
                   _shown_secret)
        # NOTE: a zipkin reporter without a URL would export nowhere; say so at startup.
        if self.reporter == 'zipkin' and not self.zipkin_url:
            raise ConfigError('FALCON_TRACING_REPORTER=zipkin needs FALCON_TRACING_ZIPKIN_URL '
                              '(or OTEL_EXPORTER_ZIPKIN_ENDPOINT), e.g. '
                              'http://127.0.0.1:9411/api/v2/spans')
        if self.otlp_protocol == 'grpc' and self.tracer == 'builtin' \
                and self.effective_reporter == 'otlp':
            raise ConfigError('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL '
                              '/ FALCON_TRACING_OTLP_PROTOCOL=grpc is not valid for the otlp '
                              'reporter, which speaks OTLP/HTTP: use http/protobuf (port '
                              '4318) or http/json, or for gRPC use FALCON_TRACING_TRACER=otel '
                              'with opentelemetry-exporter-otlp-proto-grpc installed')
        if (self.otlp_client_certificate is None) != (self.otlp_client_key is None):
            raise ConfigError('OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE and '
                              'OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY (or their '
                              'FALCON_TRACING_OTLP_* forms) go together: set both or neither')
        if self.batch_size is not None and self.batch_size > self.queue_size:
            raise ConfigError(f'FALCON_TRACING_BATCH_SIZE={self.batch_size} is not valid: it '
                              f'must not exceed FALCON_TRACING_QUEUE_SIZE={self.queue_size}')
        if self.batch_bytes > self.queue_bytes:
            raise ConfigError(f'FALCON_TRACING_BATCH_BYTES={self.batch_bytes} is not valid: '
                              f'it must not exceed FALCON_TRACING_QUEUE_BYTES='
                              f'{self.queue_bytes}')
        for name in ('request_hook', 'response_hook', 'operation_name'):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f'option {name}={value!r} is not valid: expected a callable')

    def __repr__(self) -> str:
        # NOTE: a configuration may be logged; its secrets must not be. Header values
        # and a URL's credentials and query are replaced by ***.
        shown = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _SECRET_FIELDS:
                value = tuple((key, '***') for key, _ in value)
            elif field.name in _URL_FIELDS and value is not None:
                value = shown_url(value)
            shown.append(f'{field.name}={value!r}')
        return f'TracingConfig({", ".join(shown)})'

    @property
    def effective_reporter(self) -> str:
        """The reporter in use: the configured one, else zipkin with a Zipkin URL, else
        otlp with an OTLP endpoint, else log."""
        if self.reporter is not None:
            return self.reporter
        if self.zipkin_url:
            return 'zipkin'
        return 'otlp' if self.otlp_endpoint else 'log'

    @property
    def effective_otlp_endpoint(self) -> str:
        """The otlp reporter's URL: the configured one, else OpenTelemetry's default."""
        return self.otlp_endpoint or DEFAULT_OTLP_ENDPOINT

    @property
    def effective_http_semconv(self) -> str:
        """The HTTP tag names in use: as configured, else ``stable`` for the OTLP reporter
        (OTLP spans carry OpenTelemetry's names) and ``old`` for the others."""
        if self.http_semconv is not None:
            return self.http_semconv
        return 'stable' if self.effective_reporter == 'otlp' else 'old'

    @property
    def parent_based(self) -> bool:
        """Whether the sampler follows an incoming decision (the ``parentbased_*`` ones)."""
        return self.sampler.startswith('parentbased_')

    @property
    def effective_sample_rate(self) -> float:
        """The fraction of new traces sampled: 1 or 0 for the constant samplers, else
        ``sample_rate``."""
        if self.sampler.endswith('always_on'):
            return 1.0
        if self.sampler.endswith('always_off'):
            return 0.0
        return self.sample_rate

    @property
    def effective_xray_ids(self) -> bool:
        """Whether new trace ids are X-Ray style: as configured, else on with xray in use."""
        if self.xray_ids is not None:
            return self.xray_ids
        return 'xray' in self.propagation or self.effective_reporter == 'xray'

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None,
                 **options: Any) -> TracingConfig:
        """Build the configuration from the environment and keyword overrides.

        Args:
            environ: the variables to read; ``os.environ`` when omitted.
            **options: field values that take precedence over the environment. Strings
                are parsed like the environment variable; other values are checked.

        Raises:
            ConfigError: a value is invalid; the message names the variable or option.
            TypeError: an unknown keyword option.
        """
        if environ is None:
            environ = os.environ
        _warn_unknown(environ)
        values: dict[str, Any] = {}
        #: field -> the variable it was read from (absent: an option or the default).
        sources: dict[str, str] = {}
        for setting in SETTINGS:
            if setting.field in options:
                continue
            candidates: tuple[tuple[str, Optional[Callable[[str], Any]]], ...] = (
                (setting.env, setting.parse),)
            if setting.otel is not None:
                candidates += ((setting.otel, setting.otel_parse),) + setting.otel_more
            for env, parse in candidates:
                raw = environ.get(env)
                if raw is None or raw.strip() == '':
                    continue
                value = _parse(parse or setting.parse, env, raw, setting.show)
                if value is _IGNORED:  # an OTEL_* value OpenTelemetry ignores (warned)
                    continue
                values[setting.field] = value
                sources[setting.field] = env
                break
        for name, value in options.items():
            values[name] = _option(name, value)
        _resolve_sampling(values, sources)
        return cls(**values)

    def replace(self, **options: Any) -> TracingConfig:
        """Return a copy with some fields changed (validated like keyword options)."""
        return dataclasses.replace(self, **{name: _option(name, value)
                                            for name, value in options.items()})


def _resolve_sampling(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Settle a sampler and a rate that disagree (rules in the module docstring)."""
    sampler = values.get('sampler', _DEFAULT_SAMPLER)
    if 'sample_rate' not in values or sampler in _RATIO_SAMPLERS:
        return
    rate_source = sources.get('sample_rate', 'option sample_rate')
    sampler_source = sources.get('sampler', 'option sampler')
    if rate_source == 'OTEL_TRACES_SAMPLER_ARG':
        _warn(f'OTEL_TRACES_SAMPLER_ARG is ignored: {sampler_source}={sampler} takes no '
              f'ratio (use traceidratio or parentbased_traceidratio)', stacklevel=4)
        del values['sample_rate']
    elif sampler_source == 'OTEL_TRACES_SAMPLER':
        # FALCON_TRACING_* wins over OTEL_*: the rate stands, the parent rule is kept.
        values['sampler'] = ('parentbased_traceidratio' if sampler.startswith('parentbased_')
                             else 'traceidratio')
    else:
        raise ConfigError(f'{rate_source}={values["sample_rate"]!r} contradicts '
                          f'{sampler_source}={sampler}, which samples '
                          f'{"every" if sampler.endswith("on") else "no"} new trace: use '
                          f'traceidratio or parentbased_traceidratio with a rate')


_CODE_ONLY = {'request_hook', 'response_hook', 'operation_name', 'component'}


def _option(name: str, value: Any) -> Any:
    if name in _CODE_ONLY:
        return value
    setting = _BY_FIELD.get(name)
    if setting is None:
        valid = sorted(_BY_FIELD) + sorted(_CODE_ONLY)
        close = _close_match(name, valid)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise TypeError(f'unknown tracing option {name!r}{hint}; valid options: '
                        f'{", ".join(valid)}')
    if isinstance(value, str):
        return _parse(setting.parse, f'option {name}', value, setting.show)
    default = next(f.default for f in dataclasses.fields(TracingConfig) if f.name == name)
    if value is None and default is None:
        return None
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)):
            if setting.parse is _parse_otlp_headers:
                # The parser percent-decodes: encode each pair so that a value holding
                # '%' or ',' arrives as given.
                value = [(quote(str(item[0]), safe=''), quote(str(item[1]), safe=''))
                         if isinstance(item, tuple) and len(item) == 2 else item
                         for item in value]
            return _parse(setting.parse, f'option {name}', ','.join(
                _rule_text(item) for item in value), setting.show)
    elif isinstance(default, bool) or (default is None and isinstance(value, bool)):
        if isinstance(value, bool):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return _parse(setting.parse, f'option {name}', repr(value), setting.show)
    shown = repr(value) if setting.show is repr else f'of type {type(value).__name__}'
    raise ConfigError(f'option {name}={shown} is not valid: expected a value like '
                      f'{default!r}')


def _rule_text(item: Any) -> str:
    if isinstance(item, ExcludeRule):
        return f'{item.method or ""} {item.path}{"*" if item.prefix else ""}'.strip()
    if isinstance(item, tuple) and len(item) == 2:
        return f'{item[0]}={item[1]}'
    return str(item)


def _parse(parse: Callable[[str], Any], name: str, raw: str,
           show: Callable[[str], str] = repr) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f'{name}={show(raw)} is not valid: {exc}') from None


def _close_match(name: str, valid: list[str]) -> list[str]:
    """The valid name closest to a misspelt one (a one-element list), or []."""
    # PERF: difflib is imported only when there is a typo to explain: it is ~140 kB of
    # memory in every worker of a correctly configured service otherwise.
    import difflib
    return difflib.get_close_matches(name, valid, n=1)


def _warn_unknown(environ: Mapping[str, str]) -> None:
    for name in environ:
        if name.startswith(ENV_PREFIX) and name not in _BY_ENV and name not in _OTHER_KNOWN:
            close = _close_match(name, list(_BY_ENV) + list(_OTHER_KNOWN))
            hint = f'; did you mean {close[0]}?' if close else ''
            warnings.warn(f'unknown environment variable {name}{hint}', RuntimeWarning,
                          stacklevel=3)


#: The variable naming the app the zero-code entrypoint wraps
#: (``falcon_tracing_wsgi.entrypoint``), e.g. ``myservice.wsgi:app``.
APP_ENV = 'FALCON_TRACING_APP'

#: FALCON_TRACING_* variables read by other entry points (not TracingConfig fields).
_OTHER_KNOWN = {APP_ENV}


def app_target(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The ``FALCON_TRACING_APP`` value (stripped), or None when unset or empty.

    Args:
        environ: the variables to read; ``os.environ`` when omitted.
    """
    value = (os.environ if environ is None else environ).get(APP_ENV, '').strip()
    return value or None
