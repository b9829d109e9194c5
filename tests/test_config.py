"""Configuration: parsing, precedence, validation messages, typo warnings, README table."""

from __future__ import annotations

import dataclasses
import pathlib
import warnings

import pytest

from falcon_tracing_wsgi.config import SETTINGS, ConfigError, ExcludeRule, TracingConfig

README = pathlib.Path(__file__).resolve().parent.parent / 'README.rst'


def test_defaults_with_an_empty_environment():
    config = TracingConfig.from_env({})
    assert config == TracingConfig()
    assert config.effective_reporter == 'log'
    assert config.propagation == ('b3', 'w3c', 'baggage')


@pytest.mark.parametrize('env, field, expected', [
    pytest.param({'FALCON_TRACING_SERVICE_NAME': 'shop'}, 'service_name', 'shop', id='name'),
    pytest.param({'FALCON_TRACING_ENABLED': 'False'}, 'enabled', False, id='enabled'),
    pytest.param({'FALCON_TRACING_PROPAGATION': 'w3c, B3'}, 'propagation', ('w3c', 'b3'),
                 id='propagation-order'),
    pytest.param({'FALCON_TRACING_SAMPLE_RATE': '0.25'}, 'sample_rate', 0.25, id='rate'),
    pytest.param({'FALCON_TRACING_SAMPLE_RATE_LIMIT': '10'}, 'sample_rate_limit', 10.0,
                 id='rate-limit'),
    pytest.param({'FALCON_TRACING_TRUST_INBOUND': 'no'}, 'trust_inbound', False, id='trust'),
    pytest.param({'FALCON_TRACING_EXCLUDE': 'GET /healthz, /static/*'}, 'exclude',
                 (ExcludeRule('GET', '/healthz', False), ExcludeRule(None, '/static/', True)),
                 id='exclude'),
    pytest.param({'FALCON_TRACING_CAPTURE_REQUEST_HEADERS': 'User-Agent,X-Request-Id'},
                 'capture_request_headers', ('user-agent', 'x-request-id'), id='capture'),
    pytest.param({'FALCON_TRACING_RESPONSE_TRACE_HEADER': 'X-Trace-Id'},
                 'response_trace_header', 'X-Trace-Id', id='trace-header'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://127.0.0.1:9411/api/v2/spans'},
                 'effective_reporter', 'zipkin', id='url-means-zipkin'),
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': 'Authorization=Bearer a=b'},
                 'zipkin_headers', (('Authorization', 'Bearer a=b'),), id='headers'),
    pytest.param({'FALCON_TRACING_TAGS': 'env=prod, region=eu-1'}, 'tags',
                 (('env', 'prod'), ('region', 'eu-1')), id='tags'),
    pytest.param({'OTEL_RESOURCE_ATTRIBUTES': 'env=prod'}, 'tags', (('env', 'prod'),),
                 id='otel-resource-attributes'),
    pytest.param({'FALCON_TRACING_QUEUE_SIZE': '300'}, 'queue_size', 300, id='queue'),
    pytest.param({'FALCON_TRACING_QUEUE_BYTES': '8388608'}, 'queue_bytes', 2 ** 23,
                 id='queue-bytes'),
    pytest.param({'FALCON_TRACING_BATCH_BYTES': '65536'}, 'batch_bytes', 2 ** 16,
                 id='batch-bytes'),
    pytest.param({}, 'batch_size', None, id='batch-size-unset'),
    pytest.param({'FALCON_TRACING_REPORTER': 'NONE'}, 'reporter', 'none', id='reporter'),
])
def test_environment_values(env, field, expected):
    assert getattr(TracingConfig.from_env(env), field) == expected


@pytest.mark.parametrize('env, field, expected', [
    pytest.param({'OTEL_SERVICE_NAME': 'otel-name'}, 'service_name', 'otel-name', id='name'),
    pytest.param({'OTEL_SDK_DISABLED': 'true'}, 'enabled', False, id='disabled'),
    pytest.param({'OTEL_PROPAGATORS': 'tracecontext,baggage,b3multi'}, 'propagation',
                 ('w3c', 'baggage', 'b3'), id='propagators'),
    pytest.param({'OTEL_PROPAGATORS': 'b3'}, 'propagation', ('b3single',), id='otel-b3'),
    pytest.param({'OTEL_PROPAGATORS': 'none'}, 'propagation', (), id='none'),
    pytest.param({'OTEL_TRACES_SAMPLER_ARG': '0.5'}, 'sample_rate', 0.5, id='sampler-arg'),
    pytest.param({'OTEL_EXPORTER_ZIPKIN_ENDPOINT': 'http://z:9411/api/v2/spans'},
                 'zipkin_url', 'http://z:9411/api/v2/spans', id='endpoint'),
    pytest.param({'OTEL_PYTHON_EXCLUDED_URLS': 'healthz,ping'}, 'exclude_patterns',
                 ('healthz', 'ping'), id='excluded-urls'),
])
def test_otel_variables_are_fallbacks(env, field, expected):
    assert getattr(TracingConfig.from_env(env), field) == expected


def test_precedence_keyword_over_falcon_tracing_over_otel():
    env = {'OTEL_SERVICE_NAME': 'otel', 'FALCON_TRACING_SERVICE_NAME': 'ours'}
    assert TracingConfig.from_env(env).service_name == 'ours'
    assert TracingConfig.from_env(env, service_name='kw').service_name == 'kw'
    assert TracingConfig.from_env({'OTEL_SERVICE_NAME': 'otel'}).service_name == 'otel'


BAD_VALUES = [
    pytest.param({'FALCON_TRACING_SAMPLE_RATE': 'lots'}, ['FALCON_TRACING_SAMPLE_RATE',
                                                          "'lots'", 'from 0.0 to 1.0'],
                 id='rate-text'),
    pytest.param({'FALCON_TRACING_SAMPLE_RATE': '1.5'}, ['FALCON_TRACING_SAMPLE_RATE'],
                 id='rate-range'),
    pytest.param({'FALCON_TRACING_SAMPLE_RATE': 'nan'}, ['FALCON_TRACING_SAMPLE_RATE'],
                 id='rate-nan'),
    pytest.param({'FALCON_TRACING_SAMPLE_RATE_LIMIT': '-1'},
                 ['FALCON_TRACING_SAMPLE_RATE_LIMIT'], id='rate-limit'),
    pytest.param({'FALCON_TRACING_ENABLED': 'maybe'}, ['FALCON_TRACING_ENABLED', 'true'],
                 id='bool'),
    pytest.param({'FALCON_TRACING_PROPAGATION': 'b3,zipkin'},
                 ['FALCON_TRACING_PROPAGATION', 'w3c'], id='propagation'),
    pytest.param({'OTEL_PROPAGATORS': 'ot-trace'}, ['OTEL_PROPAGATORS', 'tracecontext'],
                 id='otel-propagators'),
    pytest.param({'FALCON_TRACING_EXCLUDE': 'healthz'}, ['FALCON_TRACING_EXCLUDE', '/path'],
                 id='exclude-no-slash'),
    pytest.param({'FALCON_TRACING_EXCLUDE': 'get_x /a'}, ['FALCON_TRACING_EXCLUDE'],
                 id='exclude-method'),
    pytest.param({'FALCON_TRACING_EXCLUDE': '/a*b'}, ['FALCON_TRACING_EXCLUDE'],
                 id='exclude-star-inside'),
    pytest.param({'FALCON_TRACING_EXCLUDE_PATTERNS': '(unclosed'},
                 ['FALCON_TRACING_EXCLUDE_PATTERNS'], id='regex'),
    pytest.param({'FALCON_TRACING_CAPTURE_REQUEST_HEADERS': 'bad header'},
                 ['FALCON_TRACING_CAPTURE_REQUEST_HEADERS'], id='header-name'),
    pytest.param({'FALCON_TRACING_CAPTURE_RESPONSE_HEADERS': 'a:b'},
                 ['FALCON_TRACING_CAPTURE_RESPONSE_HEADERS'], id='response-header-name'),
    pytest.param({'FALCON_TRACING_RESPONSE_TRACE_HEADER': 'X Trace'},
                 ['FALCON_TRACING_RESPONSE_TRACE_HEADER'], id='trace-header'),
    pytest.param({'FALCON_TRACING_REPORTER': 'jaeger'}, ['FALCON_TRACING_REPORTER', 'zipkin'],
                 id='reporter'),
    pytest.param({'FALCON_TRACING_REPORTER': 'zipkin'}, ['FALCON_TRACING_ZIPKIN_URL'],
                 id='zipkin-without-url'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'localhost:9411'},
                 ['FALCON_TRACING_ZIPKIN_URL', 'http://'], id='url'),
    pytest.param({'OTEL_EXPORTER_ZIPKIN_ENDPOINT': 'ftp://x'},
                 ['OTEL_EXPORTER_ZIPKIN_ENDPOINT'], id='otel-url'),
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': 'novalue'},
                 ['FALCON_TRACING_ZIPKIN_HEADERS'], id='zipkin-headers'),
    pytest.param({'FALCON_TRACING_TAGS': 'env'}, ['FALCON_TRACING_TAGS', 'name=value'],
                 id='tags'),
    pytest.param({'FALCON_TRACING_ZIPKIN_GZIP': '2'}, ['FALCON_TRACING_ZIPKIN_GZIP'],
                 id='gzip'),
    pytest.param({'FALCON_TRACING_QUEUE_SIZE': '0'}, ['FALCON_TRACING_QUEUE_SIZE'],
                 id='queue-zero'),
    pytest.param({'FALCON_TRACING_BATCH_SIZE': '1.5'}, ['FALCON_TRACING_BATCH_SIZE',
                                                        'whole number'], id='batch'),
    pytest.param({'FALCON_TRACING_BATCH_SIZE': '300', 'FALCON_TRACING_QUEUE_SIZE': '100'},
                 ['FALCON_TRACING_BATCH_SIZE', 'FALCON_TRACING_QUEUE_SIZE'],
                 id='batch-over-queue'),
    pytest.param({'FALCON_TRACING_QUEUE_BYTES': '1000'}, ['FALCON_TRACING_QUEUE_BYTES',
                                                         '>= 1024'], id='queue-bytes-small'),
    pytest.param({'FALCON_TRACING_BATCH_BYTES': '2MB'}, ['FALCON_TRACING_BATCH_BYTES',
                                                        'whole number'], id='batch-bytes'),
    pytest.param({'FALCON_TRACING_BATCH_BYTES': '4096', 'FALCON_TRACING_QUEUE_BYTES': '2048'},
                 ['FALCON_TRACING_BATCH_BYTES', 'FALCON_TRACING_QUEUE_BYTES'],
                 id='batch-bytes-over-queue-bytes'),
    pytest.param({'FALCON_TRACING_FLUSH_INTERVAL': '0'}, ['FALCON_TRACING_FLUSH_INTERVAL'],
                 id='flush'),
    pytest.param({'FALCON_TRACING_EXPORT_TIMEOUT': '-3'}, ['FALCON_TRACING_EXPORT_TIMEOUT'],
                 id='timeout'),
    pytest.param({'FALCON_TRACING_MAX_RETRIES': 'x'}, ['FALCON_TRACING_MAX_RETRIES'],
                 id='retries'),
    pytest.param({'FALCON_TRACING_SHUTDOWN_TIMEOUT': 'soon'},
                 ['FALCON_TRACING_SHUTDOWN_TIMEOUT'], id='shutdown'),
    pytest.param({'FALCON_TRACING_SCOPE_MANAGER': 'greenlet'},
                 ['FALCON_TRACING_SCOPE_MANAGER', 'contextvars'], id='scope'),
    pytest.param({'FALCON_TRACING_TRACE_ID_128BIT': 'yes please'},
                 ['FALCON_TRACING_TRACE_ID_128BIT'], id='128bit'),
    pytest.param({'FALCON_TRACING_TRUST_INBOUND': 'sometimes'},
                 ['FALCON_TRACING_TRUST_INBOUND'], id='trust-inbound'),
    pytest.param({'FALCON_TRACING_RECORD_QUERY': '?'}, ['FALCON_TRACING_RECORD_QUERY'],
                 id='record-query'),
    pytest.param({'FALCON_TRACING_TRACER': 'opentelemetry'}, ['FALCON_TRACING_TRACER',
                                                             'builtin, otel'], id='tracer'),
    pytest.param({'FALCON_TRACING_OTEL_TRACES_EXPORTER': 'otlp;console'},
                 ['FALCON_TRACING_OTEL_TRACES_EXPORTER', 'exporter'], id='otel-exporter'),
    pytest.param({'OTEL_TRACES_EXPORTER': 'none,console'}, ['OTEL_TRACES_EXPORTER'],
                 id='otel-exporter-none-and-more'),
    pytest.param({'FALCON_TRACING_XRAY_IDS': 'sometimes'}, ['FALCON_TRACING_XRAY_IDS', 'auto'],
                 id='xray-ids'),
    pytest.param({'FALCON_TRACING_XRAY_DAEMON_ADDRESS': 'localhost'},
                 ['FALCON_TRACING_XRAY_DAEMON_ADDRESS', 'host:port'], id='xray-daemon-no-port'),
    pytest.param({'FALCON_TRACING_XRAY_DAEMON_ADDRESS': '127.0.0.1:70000'},
                 ['FALCON_TRACING_XRAY_DAEMON_ADDRESS'], id='xray-daemon-port-range'),
    pytest.param({'AWS_XRAY_DAEMON_ADDRESS': 'tcp:127.0.0.1:2000 http:127.0.0.1:2001'},
                 ['AWS_XRAY_DAEMON_ADDRESS', 'udp:host:port'], id='xray-daemon-two-forms'),
    pytest.param({'FALCON_TRACING_SERVICE_NAME': '   '}, [], id='blank-is-default'),
]


@pytest.mark.parametrize('env, names', BAD_VALUES)
def test_bad_values_stop_startup_naming_the_variable(env, names):
    if not names:
        assert TracingConfig.from_env(env) == TracingConfig()
        return
    with pytest.raises(ConfigError) as raised:
        TracingConfig.from_env(env)
    for name in names:
        assert name in str(raised.value)


def test_every_setting_has_a_bad_value_case():
    """Each variable that can be wrong appears in BAD_VALUES (free text cannot be)."""
    free_text = {'FALCON_TRACING_SERVICE_NAME', 'FALCON_TRACING_LOG_FILE',
                 'FALCON_TRACING_REDACT_QUERY'}
    covered = {name for param in BAD_VALUES for name in param.values[0]}
    assert [s.env for s in SETTINGS if s.env not in free_text | covered] == []


@pytest.mark.parametrize('options, message', [
    pytest.param({'sample_rate': 2}, 'option sample_rate', id='number-range'),
    pytest.param({'sample_rate': 'x'}, 'option sample_rate', id='string'),
    pytest.param({'enabled': 'perhaps'}, 'option enabled', id='bool-string'),
    pytest.param({'enabled': 3}, 'option enabled', id='bool-type'),
    pytest.param({'exclude': ['nope']}, 'option exclude', id='rules'),
    pytest.param({'request_hook': 'not callable'}, 'request_hook', id='hook'),
])
def test_bad_keyword_options(options, message):
    with pytest.raises(ConfigError, match=message):
        TracingConfig.from_env({}, **options)


def test_unknown_keyword_option_suggests_the_closest():
    with pytest.raises(TypeError, match="did you mean 'sample_rate'"):
        TracingConfig.from_env({}, sample_rte=0.5)


def test_unknown_variable_is_warned_with_the_closest_name():
    with pytest.warns(RuntimeWarning, match='FALCON_TRACING_SAMPLE_RATE'):
        TracingConfig.from_env({'FALCON_TRACING_SAMPLE_RAT': '0.5'})


def test_known_variables_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        TracingConfig.from_env({s.env: '1' for s in SETTINGS
                                if s.field in ('sample_rate', 'batch_size')})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TracingConfig().service_name = 'x'  # type: ignore[misc]


def test_keyword_lists_and_replace():
    config = TracingConfig.from_env({}, exclude=['GET /healthz'], propagation=['jaeger'])
    assert config.exclude == (ExcludeRule('GET', '/healthz', False),)
    assert config.replace(sample_rate=0.5).sample_rate == 0.5
    assert config.replace(sample_rate=0.5).exclude == config.exclude


def readme_variables_block() -> str:
    """The README's list of variables, generated from SETTINGS (defaults included)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TracingConfig)}
    lines = []
    for setting in SETTINGS:
        default = defaults[setting.field]
        if isinstance(default, tuple):
            default = ','.join(x if isinstance(x, str) else '='.join(x) for x in default)
        elif isinstance(default, bool):
            default = str(default).lower()
        shown = f'``{default}``' if default not in (None, '') else 'none'
        fallback = ''
        if setting.otel:
            owner = 'OpenTelemetry fallback' if setting.otel.startswith('OTEL_') else 'fallback'
            fallback = f'; {owner} ``{setting.otel}``'
        doc = setting.doc.replace('*', '\\*')  # RST: a literal asterisk
        lines += [f'``{setting.env}`` (default {shown}{fallback})', f'    {doc}', '']
    return '\n'.join(lines)


def test_readme_documents_every_variable_with_its_default():
    """README.rst holds the generated list verbatim (print it with
    ``python -m tests.test_config`` after changing a setting)."""
    assert readme_variables_block() in README.read_text()


if __name__ == '__main__':
    print(readme_variables_block())
