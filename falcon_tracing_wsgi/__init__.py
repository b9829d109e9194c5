"""falcon-tracing-wsgi: distributed tracing for Falcon and any WSGI app."""

__version__ = '0.1.0'
