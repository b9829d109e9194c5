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

from ._redact import DEFAULT_REDACT_QUERY

__all__ = ['TracingConfig', 'ConfigError', 'ExcludeRule', 'SETTINGS', 'ENV_PREFIX',
           'PROPAGATION_FORMATS', 'REPORTERS', 'SCOPE_MANAGERS', 'TRACERS', 'APP_ENV',
           'app_target']

_log = logging.getLogger(__name__)

ENV_PREFIX = 'FALCON_TRACING_'

#: Propagation format names accepted by ``FALCON_TRACING_PROPAGATION``.
PROPAGATION_FORMATS = ('b3', 'b3single', 'w3c', 'baggage', 'jaeger', 'xray')
#: ``OTEL_PROPAGATORS`` names and the format each one means here.
_OTEL_PROPAGATORS = {'tracecontext': 'w3c', 'baggage': 'baggage', 'b3': 'b3single',
                     'b3multi': 'b3', 'jaeger': 'jaeger', 'xray': 'xray'}
REPORTERS = ('zipkin', 'log', 'xray', 'none')
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


def _parse_otel_propagators(text: str) -> tuple[str, ...]:
    names = [name.lower() for name in _split(text)]
    if names == ['none']:
        return ()
    unknown = [name for name in names if name not in _OTEL_PROPAGATORS]
    if unknown:
        raise ValueError(f'expected a comma list of {", ".join(_OTEL_PROPAGATORS)} or none')
    return tuple(dict.fromkeys(_OTEL_PROPAGATORS[name] for name in names))


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


def _parse_url(text: str) -> Optional[str]:
    url = text.strip()
    if not url:
        return None
    if not re.match(r'https?://[^/\s]+', url):
        raise ValueError('expected an http:// or https:// URL such as '
                         'http://127.0.0.1:9411/api/v2/spans')
    return url


def _parse_key_values(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _split(text):
        key, sep, value = item.partition('=')
        if not sep or not _HEADER_NAME.fullmatch(key.strip()):
            raise ValueError('expected a comma list of name=value pairs')
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _parse_text(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError('expected a non-empty name')
    return value


def _parse_optional_text(text: str) -> Optional[str]:
    return text.strip() or None


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
    otel: Optional[str] = None
    otel_parse: Optional[Callable[[str], Any]] = None


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
    _Setting('sample_rate', 'FALCON_TRACING_SAMPLE_RATE', _number(float, 0.0, 1.0),
             'Fraction of new traces to sample (0 to 1).', 'OTEL_TRACES_SAMPLER_ARG'),
    _Setting('sample_rate_limit', 'FALCON_TRACING_SAMPLE_RATE_LIMIT', _number(float, 0.0, None),
             'At most this many new traces per second per process (0: no limit).'),
    _Setting('tags', 'FALCON_TRACING_TAGS', _parse_key_values,
             'Tags added to every span of this process, e.g. "env=prod,region=eu-1".',
             'OTEL_RESOURCE_ATTRIBUTES'),
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
    _Setting('capture_request_headers', 'FALCON_TRACING_CAPTURE_REQUEST_HEADERS',
             _parse_header_names,
             'Request headers recorded as http.request.header.<name> tags (allow-list). '
             'Authorization, Proxy-Authorization, Cookie and Set-Cookie are always redacted.'),
    _Setting('capture_response_headers', 'FALCON_TRACING_CAPTURE_RESPONSE_HEADERS',
             _parse_header_names,
             'Response headers recorded as http.response.header.<name> tags (allow-list).'),
    _Setting('redact_query', 'FALCON_TRACING_REDACT_QUERY', _parse_names,
             'Query parameters whose name contains one of these (case-insensitive) have '
             'their value replaced by REDACTED in http.url.'),
    _Setting('record_query', 'FALCON_TRACING_RECORD_QUERY', _parse_bool,
             'false drops the query string from http.url entirely.'),
    _Setting('response_trace_header', 'FALCON_TRACING_RESPONSE_TRACE_HEADER',
             _parse_optional_header,
             'Response header that carries the trace id (e.g. X-Trace-Id); empty: none.'),
    _Setting('reporter', 'FALCON_TRACING_REPORTER', _choice(REPORTERS),
             'zipkin (HTTP to FALCON_TRACING_ZIPKIN_URL), log (Zipkin v2 JSON lines), xray '
             '(UDP to the X-Ray daemon) or none. Default: zipkin when a URL is set, else log.'),
    _Setting('zipkin_url', 'FALCON_TRACING_ZIPKIN_URL', _parse_url,
             'Zipkin v2 endpoint, e.g. http://127.0.0.1:9411/api/v2/spans.',
             'OTEL_EXPORTER_ZIPKIN_ENDPOINT'),
    _Setting('zipkin_headers', 'FALCON_TRACING_ZIPKIN_HEADERS', _parse_key_values,
             'Extra headers on every upload, e.g. "Authorization=Bearer abc".'),
    _Setting('zipkin_gzip', 'FALCON_TRACING_ZIPKIN_GZIP', _parse_bool,
             'gzip the upload body.'),
    _Setting('xray_daemon_address', 'FALCON_TRACING_XRAY_DAEMON_ADDRESS', _parse_daemon_address,
             'UDP address of the X-Ray daemon for the xray reporter: host:port, or the SDKs\' '
             '"tcp:host:port udp:host:port". Fallback: AWS_XRAY_DAEMON_ADDRESS, the X-Ray '
             'SDKs\' variable.', 'AWS_XRAY_DAEMON_ADDRESS'),
    _Setting('log_file', 'FALCON_TRACING_LOG_FILE', _parse_optional_text,
             'File the log reporter appends to (default: standard error).'),
    _Setting('queue_size', 'FALCON_TRACING_QUEUE_SIZE', _number(int, 1, None),
             'Finished spans held for export before new ones are dropped (and counted); '
             'FALCON_TRACING_QUEUE_BYTES bounds their size.'),
    _Setting('queue_bytes', 'FALCON_TRACING_QUEUE_BYTES', _number(int, 1024, None),
             'Bytes of encoded spans held for export before new ones are dropped (and '
             'counted).'),
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
    propagation: tuple[str, ...] = ('b3', 'w3c', 'baggage')
    sample_rate: float = 1.0
    sample_rate_limit: float = 0.0
    tags: tuple[tuple[str, str], ...] = ()
    trust_inbound: bool = True
    trace_id_128bit: bool = True
    xray_ids: Optional[bool] = None
    scope_manager: str = 'contextvars'
    exclude: tuple[ExcludeRule, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    capture_request_headers: tuple[str, ...] = ()
    capture_response_headers: tuple[str, ...] = ()
    redact_query: tuple[str, ...] = DEFAULT_REDACT_QUERY
    record_query: bool = True
    response_trace_header: Optional[str] = None
    reporter: Optional[str] = None
    zipkin_url: Optional[str] = None
    zipkin_headers: tuple[tuple[str, str], ...] = ()
    zipkin_gzip: bool = False
    xray_daemon_address: str = '127.0.0.1:2000'
    log_file: Optional[str] = None
    queue_size: int = 65536
    queue_bytes: int = 16 * 1024 * 1024
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
        # NOTE: a zipkin reporter without a URL would export nowhere; say so at startup.
        if self.reporter == 'zipkin' and not self.zipkin_url:
            raise ConfigError('FALCON_TRACING_REPORTER=zipkin needs FALCON_TRACING_ZIPKIN_URL '
                              '(or OTEL_EXPORTER_ZIPKIN_ENDPOINT), e.g. '
                              'http://127.0.0.1:9411/api/v2/spans')
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

    @property
    def effective_reporter(self) -> str:
        """The reporter in use: the configured one, else zipkin with a URL, else log."""
        if self.reporter is not None:
            return self.reporter
        return 'zipkin' if self.zipkin_url else 'log'

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
        for setting in SETTINGS:
            if setting.field in options:
                continue
            raw = environ.get(setting.env)
            if raw is not None and raw.strip() != '':
                values[setting.field] = _parse(setting.parse, setting.env, raw)
            elif setting.otel is not None:
                raw = environ.get(setting.otel)
                if raw is not None and raw.strip() != '':
                    values[setting.field] = _parse(setting.otel_parse or setting.parse,
                                                   setting.otel, raw)
        for name, value in options.items():
            values[name] = _option(name, value)
        return cls(**values)

    def replace(self, **options: Any) -> TracingConfig:
        """Return a copy with some fields changed (validated like keyword options)."""
        return dataclasses.replace(self, **{name: _option(name, value)
                                            for name, value in options.items()})


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
        return _parse(setting.parse, f'option {name}', value)
    default = next(f.default for f in dataclasses.fields(TracingConfig) if f.name == name)
    if value is None and default is None:
        return None
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)):
            return _parse(setting.parse, f'option {name}', ','.join(
                _rule_text(item) for item in value))
    elif isinstance(default, bool) or (default is None and isinstance(value, bool)):
        if isinstance(value, bool):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return _parse(setting.parse, f'option {name}', repr(value))
    raise ConfigError(f'option {name}={value!r} is not valid: expected a value like '
                      f'{default!r}')


def _rule_text(item: Any) -> str:
    if isinstance(item, ExcludeRule):
        return f'{item.method or ""} {item.path}{"*" if item.prefix else ""}'.strip()
    if isinstance(item, tuple) and len(item) == 2:
        return f'{item[0]}={item[1]}'
    return str(item)


def _parse(parse: Callable[[str], Any], name: str, raw: str) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f'{name}={raw!r} is not valid: {exc}') from None


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
