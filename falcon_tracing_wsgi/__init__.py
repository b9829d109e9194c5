"""falcon-tracing-wsgi: distributed tracing for Falcon and any WSGI app.

The public API is small:

* :func:`wrap` - the one call for a gunicorn entrypoint: ``app = wrap(create_app())``.
* :class:`TracingMiddleware` - the WSGI wrapper, for any OpenTracing 2.x tracer.
* :func:`install` - build the configured tracer and make it opentracing's global tracer.
* :class:`TracingConfig` / :class:`ConfigError` - the settings, read from the environment.

Integrations live in their own modules and are imported by full path
(``falcon_tracing_wsgi.integrations.falcon``, ``.integrations.requests``,
``.integrations.httpx``, ``.integrations.urllib3``, ``falcon_tracing_wsgi.gunicorn``,
``.log_correlation``, ``.outbound``); test helpers in ``falcon_tracing_wsgi.testing``.
"""

# NOTE: defined before the imports below, which read it (the HTTP sender's User-Agent).
__version__ = '0.1.0'

from .bootstrap import install, wrap  # noqa: E402
from .config import ConfigError, TracingConfig  # noqa: E402
from .middleware import TracingMiddleware  # noqa: E402

__all__ = ['wrap', 'install', 'TracingMiddleware', 'TracingConfig', 'ConfigError',
           '__version__']
