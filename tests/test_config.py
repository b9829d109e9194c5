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
    pytest.param({'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT': '10'}, 'span_attribute_count_limit', 10,
                 id='span-attribute-count'),
    pytest.param({'OTEL_ATTRIBUTE_COUNT_LIMIT': '11'}, 'span_attribute_count_limit', 11,
                 id='attribute-count'),
    pytest.param({'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT': '10', 'OTEL_ATTRIBUTE_COUNT_LIMIT': '11'},
                 'span_attribute_count_limit', 10, id='span-attribute-count-first'),
    pytest.param({'OTEL_SPAN_EVENT_COUNT_LIMIT': '0'}, 'span_event_count_limit', 0,
                 id='event-count'),
    pytest.param({'OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT': '4'}, 'event_attribute_count_limit', 4,
                 id='event-attribute-count'),
    pytest.param({'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT': '100'}, 'attribute_value_length_limit',
                 100, id='value-length'),
    pytest.param({'OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT': '50',
                  'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT': '100'}, 'attribute_value_length_limit',
                 50, id='span-value-length-first'),
])
def test_otel_variables_are_fallbacks(env, field, expected):
    assert getattr(TracingConfig.from_env(env), field) == expected


@pytest.mark.parametrize('env, expected', [
    pytest.param({}, ('log', 'http://localhost:4318/v1/traces', 'http/protobuf', (), 'none',
                      10.0), id='defaults'),
    pytest.param({'FALCON_TRACING_REPORTER': 'otlp'},
                 ('otlp', 'http://localhost:4318/v1/traces', 'http/protobuf', (), 'none', 10.0),
                 id='reporter-alone-uses-the-default-endpoint'),
    pytest.param({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://c:4318'},
                 ('otlp', 'http://c:4318/v1/traces', 'http/protobuf', (), 'none', 10.0),
                 id='base-endpoint-gets-v1-traces-and-picks-otlp'),
    pytest.param({'OTEL_EXPORTER_OTLP_ENDPOINT': 'https://c/mycollector/?tenant=1'},
                 ('otlp', 'https://c/mycollector/v1/traces?tenant=1', 'http/protobuf', (),
                  'none', 10.0), id='base-endpoint-with-path-and-query'),
    pytest.param({'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': 'http://c:4318',
                  'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://other:4318'},
                 ('otlp', 'http://c:4318/', 'http/protobuf', (), 'none', 10.0),
                 id='traces-endpoint-as-given-root-path'),
    pytest.param({'FALCON_TRACING_OTLP_ENDPOINT': 'http://ours/x',
                  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': 'http://c:4318/v1/traces'},
                 ('otlp', 'http://ours/x', 'http/protobuf', (), 'none', 10.0),
                 id='falcon-tracing-variable-first'),
    pytest.param({'OTEL_EXPORTER_OTLP_PROTOCOL': 'http/json',
                  'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL': 'http/protobuf',
                  'OTEL_EXPORTER_OTLP_HEADERS': 'a=1',
                  'OTEL_EXPORTER_OTLP_TRACES_HEADERS': 'api-key=s%3Dcr%2Ct, x-tenant = a b',
                  'OTEL_EXPORTER_OTLP_COMPRESSION': 'none',
                  'OTEL_EXPORTER_OTLP_TRACES_COMPRESSION': 'GZIP',
                  'OTEL_EXPORTER_OTLP_TIMEOUT': '30000',
                  'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT': '2500',
                  'FALCON_TRACING_REPORTER': 'otlp'},
                 ('otlp', 'http://localhost:4318/v1/traces', 'http/protobuf',
                  (('api-key', 's=cr,t'), ('x-tenant', 'a b')), 'gzip', 2.5),
                 id='traces-variables-over-generic-ones'),
    pytest.param({'OTEL_EXPORTER_OTLP_PROTOCOL': 'http/json',
                  'OTEL_EXPORTER_OTLP_HEADERS': 'a=1', 'OTEL_EXPORTER_OTLP_TIMEOUT': '30000',
                  'OTEL_EXPORTER_OTLP_COMPRESSION': 'gzip', 'FALCON_TRACING_REPORTER': 'otlp'},
                 ('otlp', 'http://localhost:4318/v1/traces', 'http/json', (('a', '1'),),
                  'gzip', 30.0), id='generic-variables'),
    pytest.param({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://c:4318',
                  'OTEL_EXPORTER_ZIPKIN_ENDPOINT': 'http://z:9411/api/v2/spans'},
                 ('zipkin', 'http://c:4318/v1/traces', 'http/protobuf', (), 'none', 10.0),
                 id='a-zipkin-url-still-picks-zipkin'),
    pytest.param({'OTEL_EXPORTER_OTLP_PROTOCOL': 'grpc', 'FALCON_TRACING_TRACER': 'otel',
                  'FALCON_TRACING_REPORTER': 'otlp'},
                 ('otlp', 'http://localhost:4318/v1/traces', 'grpc', (), 'none', 10.0),
                 id='grpc-is-the-otel-tracers-business'),
])
def test_otlp_exporter_variables(env, expected):
    config = TracingConfig.from_env(env)
    assert (config.effective_reporter, config.effective_otlp_endpoint, config.otlp_protocol,
            config.otlp_headers, config.otlp_compression, config.otlp_timeout) == expected


@pytest.mark.parametrize('env', [
    pytest.param({'OTEL_EXPORTER_OTLP_HEADERS': 'api-key=sup3rs3cret,bad name=sup3rs3cret'},
                 id='otlp-headers'),
    pytest.param({'OTEL_EXPORTER_OTLP_TRACES_HEADERS': 'sup3rs3cret'}, id='otlp-no-equals'),
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': 'Authorization:sup3rs3cret'},
                 id='zipkin-headers'),
])
def test_header_values_never_appear_in_messages(env):
    with pytest.raises(ConfigError) as raised:
        TracingConfig.from_env(env)
    assert 'sup3rs3cret' not in str(raised.value)
    assert next(iter(env)) in str(raised.value)


@pytest.mark.parametrize('option', ['zipkin_headers', 'otlp_headers'])
def test_header_values_never_appear_in_option_messages_or_repr(option):
    with pytest.raises(ConfigError) as raised:
        TracingConfig.from_env({}, **{option: 'no-equals-sup3rs3cret'})
    assert 'sup3rs3cret' not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        TracingConfig.from_env({}, **{option: 42})
    assert '42' not in str(raised.value)
    config = TracingConfig.from_env({}, **{option: 'Authorization=sup3rs3cret'})
    assert getattr(config, option) == (('Authorization', 'sup3rs3cret'),)
    assert 'sup3rs3cret' not in repr(config)


def test_otlp_headers_as_a_keyword_list_arrive_as_given():
    config = TracingConfig.from_env({}, otlp_headers=[('Authorization', 'Basic a%2Cb,c=='),
                                                      ('x-tenant', 'a b')])
    assert config.otlp_headers == (('Authorization', 'Basic a%2Cb,c=='), ('x-tenant', 'a b'))


def test_otel_resource_attributes_are_percent_decoded():
    config = TracingConfig.from_env({'OTEL_RESOURCE_ATTRIBUTES':
                                     'deployment.environment=prod%20eu,team=a%2Cb'})
    assert config.tags == (('deployment.environment', 'prod eu'), ('team', 'a,b'))
    # FALCON_TRACING_TAGS is this package's own format: taken literally.
    assert TracingConfig.from_env({'FALCON_TRACING_TAGS': 'k=a%20b'}).tags == (('k', 'a%20b'),)


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
    pytest.param({'FALCON_TRACING_HTTP_KNOWN_METHODS': 'GET, PUR GE'},
                 ['FALCON_TRACING_HTTP_KNOWN_METHODS', 'GET,POST,PURGE'], id='known-methods'),
    pytest.param({'FALCON_TRACING_HTTP_SEMCONV': 'http'},
                 ['FALCON_TRACING_HTTP_SEMCONV', 'old, stable, dup'], id='http-semconv'),
    pytest.param({'FALCON_TRACING_SAMPLER': 'xray'},
                 ['FALCON_TRACING_SAMPLER', 'parentbased_always_on'], id='sampler'),
    pytest.param({'FALCON_TRACING_SAMPLER': 'always_off', 'FALCON_TRACING_SAMPLE_RATE': '0.5'},
                 ['FALCON_TRACING_SAMPLE_RATE', 'FALCON_TRACING_SAMPLER=always_off',
                  'traceidratio'], id='sampler-contradicts-rate'),
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
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://127.0.0.1:94111/api/v2/spans'},
                 ['FALCON_TRACING_ZIPKIN_URL', '1 to 65535'], id='url-port-range'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://127.0.0.1:0/api/v2/spans'},
                 ['FALCON_TRACING_ZIPKIN_URL', '1 to 65535'], id='url-port-zero'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://127.0.0.1:zipkin/'},
                 ['FALCON_TRACING_ZIPKIN_URL', '1 to 65535'], id='url-port-text'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://[::1/api/v2/spans'},
                 ['FALCON_TRACING_ZIPKIN_URL', 'http://'], id='url-ipv6-unclosed'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://:9411/api/v2/spans'},
                 ['FALCON_TRACING_ZIPKIN_URL', 'http://'], id='url-no-host'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': 'http://zip kin:9411/'},
                 ['FALCON_TRACING_ZIPKIN_URL', 'spaces'], id='url-space'),
    pytest.param({'OTEL_EXPORTER_ZIPKIN_ENDPOINT': 'https://u:p@zipkin:9411/'},
                 ['OTEL_EXPORTER_ZIPKIN_ENDPOINT', 'FALCON_TRACING_ZIPKIN_HEADERS'],
                 id='url-credentials'),
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': 'Content-Type=text/plain'},
                 ['FALCON_TRACING_ZIPKIN_HEADERS', 'Content-Type', 'sender'],
                 id='zipkin-headers-reserved'),
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': 'X-B3-Sampled=1'},
                 ['FALCON_TRACING_ZIPKIN_HEADERS', 'X-B3-Sampled'], id='zipkin-headers-b3'),
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
    pytest.param({'FALCON_TRACING_LOG_FILE': '/no/such/directory/spans.log'},
                 ['FALCON_TRACING_LOG_FILE', 'does not exist'], id='log-file'),
    pytest.param({'FALCON_TRACING_SPAN_ATTRIBUTE_COUNT_LIMIT': '-1'},
                 ['FALCON_TRACING_SPAN_ATTRIBUTE_COUNT_LIMIT', 'whole number'],
                 id='attribute-count'),
    pytest.param({'OTEL_ATTRIBUTE_COUNT_LIMIT': 'many'}, ['OTEL_ATTRIBUTE_COUNT_LIMIT'],
                 id='otel-attribute-count'),
    pytest.param({'FALCON_TRACING_SPAN_EVENT_COUNT_LIMIT': '1.5'},
                 ['FALCON_TRACING_SPAN_EVENT_COUNT_LIMIT'], id='event-count'),
    pytest.param({'FALCON_TRACING_EVENT_ATTRIBUTE_COUNT_LIMIT': 'x'},
                 ['FALCON_TRACING_EVENT_ATTRIBUTE_COUNT_LIMIT'], id='event-attribute-count'),
    pytest.param({'FALCON_TRACING_ATTRIBUTE_VALUE_LENGTH_LIMIT': '0'},
                 ['FALCON_TRACING_ATTRIBUTE_VALUE_LENGTH_LIMIT', '>= 1'], id='value-length'),
    pytest.param({'FALCON_TRACING_SERVICE_NAME': '   '}, [], id='blank-is-default'),
    pytest.param({'FALCON_TRACING_OTLP_ENDPOINT': 'collector:4318'},
                 ['FALCON_TRACING_OTLP_ENDPOINT', 'http://'], id='otlp-endpoint-no-scheme'),
    pytest.param({'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT': 'ftp://c/v1/traces'},
                 ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'], id='otlp-traces-endpoint-scheme'),
    pytest.param({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://c:99999'},
                 ['OTEL_EXPORTER_OTLP_ENDPOINT'], id='otlp-endpoint-port'),
    pytest.param({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://user:pw@c:4318'},
                 ['OTEL_EXPORTER_OTLP_ENDPOINT', 'HEADERS'], id='otlp-endpoint-credentials'),
    pytest.param({'FALCON_TRACING_OTLP_PROTOCOL': 'http/xml'},
                 ['FALCON_TRACING_OTLP_PROTOCOL', 'http/protobuf'], id='otlp-protocol'),
    pytest.param({'OTEL_EXPORTER_OTLP_PROTOCOL': 'grpc', 'FALCON_TRACING_REPORTER': 'otlp'},
                 ['OTEL_EXPORTER_OTLP_PROTOCOL', 'FALCON_TRACING_TRACER=otel',
                  'http/protobuf'], id='otlp-grpc-points-to-the-otel-tracer'),
    pytest.param({'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL': 'grpc',
                  'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://c:4317'},
                 ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'], id='otlp-grpc-implied-reporter'),
    pytest.param({'FALCON_TRACING_OTLP_HEADERS': 'api-key'},
                 ['FALCON_TRACING_OTLP_HEADERS', 'entry 1'], id='otlp-headers-no-equals'),
    pytest.param({'OTEL_EXPORTER_OTLP_HEADERS': 'a=1,bad name=2'},
                 ['OTEL_EXPORTER_OTLP_HEADERS', 'entry 2'], id='otlp-headers-bad-name'),
    pytest.param({'OTEL_EXPORTER_OTLP_TRACES_HEADERS': 'x=a%0D%0AInjected: 1'},
                 ['OTEL_EXPORTER_OTLP_TRACES_HEADERS', 'line break'],
                 id='otlp-headers-encoded-newline'),
    pytest.param({'OTEL_EXPORTER_OTLP_HEADERS': 'Content-Type=text/plain'},
                 ['OTEL_EXPORTER_OTLP_HEADERS', 'exporter itself'], id='otlp-headers-owned'),
    pytest.param({'FALCON_TRACING_OTLP_COMPRESSION': 'zstd'},
                 ['FALCON_TRACING_OTLP_COMPRESSION', 'gzip'], id='otlp-compression'),
    pytest.param({'OTEL_EXPORTER_OTLP_COMPRESSION': 'deflate'},
                 ['OTEL_EXPORTER_OTLP_COMPRESSION'], id='otlp-compression-otel'),
    pytest.param({'FALCON_TRACING_OTLP_TIMEOUT': '0'}, ['FALCON_TRACING_OTLP_TIMEOUT'],
                 id='otlp-timeout'),
    pytest.param({'OTEL_EXPORTER_OTLP_TIMEOUT': '1.5s'},
                 ['OTEL_EXPORTER_OTLP_TIMEOUT', '10 to 600000'], id='otlp-timeout-ms'),
    pytest.param({'FALCON_TRACING_OTLP_CERTIFICATE': '/no/such/ca.pem'},
                 ['FALCON_TRACING_OTLP_CERTIFICATE', 'no such file'], id='otlp-ca-missing'),
    pytest.param({'OTEL_EXPORTER_OTLP_CERTIFICATE': '/no/such/ca.pem'},
                 ['OTEL_EXPORTER_OTLP_CERTIFICATE'], id='otlp-ca-missing-otel'),
    pytest.param({'FALCON_TRACING_OTLP_CLIENT_CERTIFICATE': '/no/such/cert.pem'},
                 ['FALCON_TRACING_OTLP_CLIENT_CERTIFICATE'], id='otlp-client-cert-missing'),
    pytest.param({'FALCON_TRACING_OTLP_CLIENT_KEY': '/no/such/key.pem'},
                 ['FALCON_TRACING_OTLP_CLIENT_KEY'], id='otlp-client-key-missing'),
    pytest.param({'OTEL_EXPORTER_OTLP_CLIENT_KEY': __file__},
                 ['CLIENT_CERTIFICATE', 'both or neither'], id='otlp-client-key-alone'),
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
    free_text = {'FALCON_TRACING_SERVICE_NAME', 'FALCON_TRACING_REDACT_QUERY'}
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


SECRET = 's3cr3t-T0KEN'


@pytest.mark.parametrize('env, options', [
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': f'Authorization: Bearer {SECRET}'}, {},
                 id='headers-env'),
    pytest.param({'FALCON_TRACING_ZIPKIN_HEADERS': f'Authorization=Bearer {SECRET}\n'
                                                   'X-B3-Flags=1'}, {},
                 id='headers-env-reserved'),
    pytest.param({}, {'zipkin_headers': f'Authorization: Bearer {SECRET}'},
                 id='headers-option-text'),
    pytest.param({}, {'zipkin_headers': [('Host', SECRET)]}, id='headers-option-list'),
    pytest.param({}, {'zipkin_headers': {'Authorization': SECRET}}, id='headers-option-type'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': f'http://user:{SECRET}@zipkin:9411/'}, {},
                 id='url-userinfo'),
    pytest.param({'FALCON_TRACING_ZIPKIN_URL': f'http://zipkin:94111/?token={SECRET}'}, {},
                 id='url-query'),
    pytest.param({'OTEL_EXPORTER_ZIPKIN_ENDPOINT': f'ftp://{SECRET}@zipkin/'}, {},
                 id='otel-url-userinfo'),
    pytest.param({}, {'zipkin_url': f'http://zipkin:9411/?token={SECRET} x'}, id='url-option'),
])
def test_a_config_error_never_shows_a_secret(env, options):
    with pytest.raises(ConfigError) as raised:
        TracingConfig.from_env(env, **options)
    message = str(raised.value)
    assert SECRET not in message
    assert 'ZIPKIN' in message.upper()


@pytest.mark.parametrize('build', [
    pytest.param(lambda: TracingConfig(zipkin_url='http://127.0.0.1:94111/api/v2/spans'),
                 id='url'),
    pytest.param(lambda: TracingConfig(zipkin_headers=(('Authorization', f'a\r\n{SECRET}'),)),
                 id='headers'),
    pytest.param(lambda: TracingConfig(xray_daemon_address='127.0.0.1:99999'), id='xray'),
])
def test_a_config_built_in_code_is_checked_too(build):
    with pytest.raises(ConfigError) as raised:
        build()
    assert SECRET not in str(raised.value)


def test_repr_hides_header_values_and_the_url_query():
    config = TracingConfig.from_env({
        'FALCON_TRACING_ZIPKIN_URL': f'http://zipkin:9411/api/v2/spans?key={SECRET}',
        'FALCON_TRACING_ZIPKIN_HEADERS': f'Authorization=Bearer {SECRET}'})
    shown = repr(config)
    assert SECRET not in shown
    assert "('Authorization', '***')" in shown
    assert 'http://zipkin:9411/api/v2/spans?***' in shown


@pytest.mark.parametrize('url', [
    'http://127.0.0.1:9411/api/v2/spans', 'https://zipkin.example:443/api/v2/spans',
    'http://[::1]:9411/api/v2/spans', 'http://zipkin', 'HTTP://Zipkin:9411/x?y=1',
])
def test_a_url_the_config_accepts_the_sender_accepts(url):
    from falcon_tracing_wsgi.zipkin import HttpSender
    config = TracingConfig.from_env({'FALCON_TRACING_ZIPKIN_URL': url})
    assert HttpSender(config.zipkin_url).url == url


@pytest.mark.parametrize('name', ['Content-Type', 'content-length', 'Content-Encoding',
                                  'Transfer-Encoding', 'Host', 'b3', 'X-B3-TraceId'])
def test_the_config_refuses_the_headers_the_sender_refuses(name):
    from falcon_tracing_wsgi.zipkin import HttpSender
    with pytest.raises(ValueError):
        HttpSender('http://127.0.0.1:9411/', headers={name: 'x'})
    with pytest.raises(ConfigError, match='FALCON_TRACING_ZIPKIN_HEADERS'):
        TracingConfig.from_env({'FALCON_TRACING_ZIPKIN_HEADERS': f'{name}=x'})


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
        names = setting.fallbacks
        if names:
            owner = 'OpenTelemetry fallback' if names[0].startswith('OTEL_') else 'fallback'
            fallback = f'; {owner} ' + ', then '.join(f'``{name}``' for name in names)
        # RST: a literal asterisk, and a word's trailing '_' is no link (OTEL_\*)
        doc = setting.doc.replace('*', '\\*').replace('_\\*', '\\_\\*')
        lines += [f'``{setting.env}`` (default {shown}{fallback})', f'    {doc}', '']
    return '\n'.join(lines)


def test_readme_documents_every_variable_with_its_default():
    """README.rst holds the generated list verbatim (print it with
    ``python -m tests.test_config`` after changing a setting)."""
    assert readme_variables_block() in README.read_text()


if __name__ == '__main__':
    print(readme_variables_block())


# --- sampling: FALCON_TRACING_SAMPLER / OTEL_TRACES_SAMPLER and the rate -----------------

@pytest.mark.parametrize('env, options, sampler, parent_based, rate', [
    pytest.param({}, {}, 'parentbased_traceidratio', True, 1.0, id='default'),
    pytest.param({'FALCON_TRACING_SAMPLE_RATE': '0.25'}, {}, 'parentbased_traceidratio',
                 True, 0.25, id='rate-alone'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_off'}, {}, 'always_off', False, 0.0,
                 id='otel-always-off'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'ALWAYS_ON'}, {}, 'always_on', False, 1.0,
                 id='otel-case-insensitive'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_always_off'}, {},
                 'parentbased_always_off', True, 0.0, id='otel-parentbased-always-off'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'traceidratio', 'OTEL_TRACES_SAMPLER_ARG': '0.1'},
                 {}, 'traceidratio', False, 0.1, id='otel-ratio-with-arg'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_traceidratio'}, {},
                 'parentbased_traceidratio', True, 1.0, id='otel-ratio-without-arg'),
    pytest.param({'OTEL_TRACES_SAMPLER_ARG': '0.5'}, {}, 'parentbased_traceidratio', True,
                 0.5, id='arg-with-the-default-ratio-sampler'),
    pytest.param({'FALCON_TRACING_SAMPLER': 'always_on', 'OTEL_TRACES_SAMPLER': 'always_off'},
                 {}, 'always_on', False, 1.0, id='ours-over-otel'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_off', 'FALCON_TRACING_SAMPLE_RATE': '0.5'},
                 {}, 'traceidratio', False, 0.5, id='our-rate-over-otel-constant'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_always_on',
                  'FALCON_TRACING_SAMPLE_RATE': '0.5'}, {}, 'parentbased_traceidratio', True,
                 0.5, id='our-rate-over-otel-parentbased-constant'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_off'}, {'sample_rate': 0.5}, 'traceidratio',
                 False, 0.5, id='option-rate-over-otel-constant'),
    pytest.param({}, {'sampler': 'parentbased_always_off'}, 'parentbased_always_off', True,
                 0.0, id='option'),
])
def test_sampler_and_rate(env, options, sampler, parent_based, rate):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        config = TracingConfig.from_env(env, **options)
    assert (config.sampler, config.parent_based, config.effective_sample_rate) == \
        (sampler, parent_based, rate)


@pytest.mark.parametrize('env, sampler, rate, words', [
    pytest.param({'OTEL_TRACES_SAMPLER': 'xray'}, 'parentbased_traceidratio', 1.0,
                 ["OTEL_TRACES_SAMPLER='xray'", 'always_off', 'parentbased_traceidratio'],
                 id='unknown-otel-sampler'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'jaeger_remote', 'FALCON_TRACING_SAMPLE_RATE': '0.2'},
                 'parentbased_traceidratio', 0.2, ['jaeger_remote'],
                 id='unknown-otel-sampler-keeps-our-rate'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'traceidratio', 'OTEL_TRACES_SAMPLER_ARG': 'half'},
                 'traceidratio', 1.0, ["OTEL_TRACES_SAMPLER_ARG='half'", 'ignored'],
                 id='invalid-otel-arg'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_off', 'OTEL_TRACES_SAMPLER_ARG': '0.5'},
                 'always_off', 0.0, ['OTEL_TRACES_SAMPLER_ARG', 'OTEL_TRACES_SAMPLER=always_off'],
                 id='arg-of-a-constant-sampler'),
])
def test_otel_sampler_values_we_cannot_use_are_warned_about_and_ignored(env, sampler, rate,
                                                                        words):
    with pytest.warns(RuntimeWarning) as caught:
        config = TracingConfig.from_env(env)
    assert (config.sampler, config.effective_sample_rate) == (sampler, rate)
    message = ' '.join(str(w.message) for w in caught)
    for word in words:
        assert word in message


@pytest.mark.parametrize('value, propagation, words', [
    pytest.param('tracecontext,ottrace,baggage', ('w3c', 'baggage'),
                 ['ottrace', 'tracecontext', 'b3multi'],
                 id='unknown-skipped'),
    pytest.param('ot-trace,Foo', ('b3', 'w3c', 'baggage'),
                 ['ot-trace, foo', 'default b3,w3c,baggage'], id='all-unknown-default'),
    pytest.param('none,b3', ('b3single',), ['none'], id='none-among-others'),
])
def test_unknown_otel_propagators_are_warned_about_and_skipped(value, propagation, words):
    with pytest.warns(RuntimeWarning) as caught:
        config = TracingConfig.from_env({'OTEL_PROPAGATORS': value})
    assert config.propagation == propagation
    assert len(caught) == 1  # one warning naming every skipped entry
    for word in words:
        assert word in str(caught[0].message)
