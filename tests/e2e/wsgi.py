"""The e2e app traced the README's way, ``app = wrap(create_app())``: tests.e2e.wsgi:app."""

from __future__ import annotations

from falcon_tracing_wsgi import wrap

from .apps import create_app

app = wrap(create_app())
