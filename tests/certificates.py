"""Self-signed TLS certificates for the tests' https servers (made with ``openssl``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional


def make_certificate(folder: str) -> Optional[tuple[str, str]]:
    """A self-signed certificate for 127.0.0.1 made with ``openssl`` (None without it)."""
    if shutil.which('openssl') is None:
        return None
    cert, key = os.path.join(folder, 'cert.pem'), os.path.join(folder, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext',
                    'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True,
                   timeout=60)
    return cert, key
