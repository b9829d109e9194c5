"""The tracer: an OpenTracing 2.x implementation that knows a Reporter, not Zipkin.

One concept per module: :mod:`.context` (what propagates), :mod:`.ids` (random ids),
:mod:`.sampler` (decisions for new traces), :mod:`.span` (what is recorded),
:mod:`.scope` (which span is active), :mod:`.tracer` (the wiring). Importing this package
starts no thread and does no I/O.
"""

from __future__ import annotations

from .context import SpanContext
from .ids import RandomIdGenerator
from .sampler import ConstSampler, ProbabilisticSampler, RateLimitingSampler, build_sampler
from .scope import ContextVarScopeManager, build_scope_manager
from .span import Span, UnsampledSpan
from .tracer import Tracer

__all__ = ['Tracer', 'Span', 'UnsampledSpan', 'SpanContext', 'RandomIdGenerator',
           'ConstSampler', 'ProbabilisticSampler', 'RateLimitingSampler', 'build_sampler',
           'ContextVarScopeManager', 'build_scope_manager']
