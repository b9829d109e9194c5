"""The package type-checks under ``mypy --strict`` (configured in setup.cfg)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_package_passes_mypy_strict():
    pytest.importorskip('mypy')
    result = subprocess.run([sys.executable, '-m', 'mypy', '--no-incremental'], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
