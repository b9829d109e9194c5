"""The configured sampler drives this package's own tracer (FALCON_TRACING_SAMPLER /
OTEL_TRACES_SAMPLER and the rate), through ``bootstrap.build_tracer``."""

from __future__ import annotations

from typing import Optional

import pytest
from opentracing import Format

from falcon_tracing_wsgi.bootstrap import build_tracer
from falcon_tracing_wsgi.config import TracingConfig
from falcon_tracing_wsgi.testing import InMemoryReporter

TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
# The low 64 bits of these trace ids are below / above 0.5 * 2**64.
LOW_TRACE = '0' * 16 + '0000000000000001'
HIGH_TRACE = '0' * 16 + 'ffffffffffffff00'
SPAN = '00f067aa0ba902b7'


def _sampled(env: dict[str, str], inbound: Optional[str], trace: str = TRACE) -> bool:
    tracer = build_tracer(TracingConfig.from_env(env), reporter=InMemoryReporter())
    parent = None
    if inbound is not None:
        parent = tracer.extract(Format.HTTP_HEADERS,
                                {'traceparent': f'00-{trace}-{SPAN}-{inbound}'})
    span = tracer.start_span('GET', child_of=parent)
    child = tracer.start_span('child', child_of=span)
    assert child.context.sampled is span.context.sampled  # never cut inside a service
    return bool(span.context.sampled)


@pytest.mark.parametrize('env, inbound, sampled', [
    pytest.param({}, None, True, id='default-new-trace'),
    pytest.param({}, '00', False, id='default-follows-unsampled-caller'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_off'}, None, False, id='always-off'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_off'}, '01', False,
                 id='always-off-ignores-sampled-caller'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'always_on'}, '00', True,
                 id='always-on-ignores-unsampled-caller'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_always_off'}, None, False,
                 id='parentbased-always-off-new-trace'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_always_off'}, '01', True,
                 id='parentbased-always-off-follows-sampled-caller'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_always_on'}, '00', False,
                 id='parentbased-always-on-follows-unsampled-caller'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_always_off',
                  'FALCON_TRACING_TRUST_INBOUND': 'false'}, '01', False,
                 id='parentbased-untrusted-caller-is-not-followed'),
    pytest.param({'FALCON_TRACING_SAMPLER': 'always_off'}, None, False, id='ours'),
])
def test_the_configured_sampler_decides(env, inbound, sampled):
    assert _sampled(env, inbound) is sampled


@pytest.mark.parametrize('env, inbound, trace, sampled', [
    pytest.param({'OTEL_TRACES_SAMPLER': 'traceidratio', 'OTEL_TRACES_SAMPLER_ARG': '0.5'},
                 '00', LOW_TRACE, True, id='ratio-ignores-the-caller-low-id'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'traceidratio', 'OTEL_TRACES_SAMPLER_ARG': '0.5'},
                 '01', HIGH_TRACE, False, id='ratio-ignores-the-caller-high-id'),
    pytest.param({'OTEL_TRACES_SAMPLER': 'parentbased_traceidratio',
                  'OTEL_TRACES_SAMPLER_ARG': '0.5'}, '01', HIGH_TRACE, True,
                 id='parentbased-ratio-follows-the-caller'),
])
def test_ratio_samplers_decide_from_the_trace_id(env, inbound, trace, sampled):
    assert _sampled(env, inbound, trace) is sampled
