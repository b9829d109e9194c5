"""What a user installs: the type hints' marker, and no requirement the package never uses."""

from __future__ import annotations

import ast
import configparser
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'falcon_tracing_wsgi'


def test_the_built_package_carries_py_typed(tmp_path):
    """PEP 561: without the marker, users' type checkers ignore the package's hints."""
    subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '--build-lib',
                    str(tmp_path)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert (tmp_path / 'falcon_tracing_wsgi' / 'py.typed').is_file()


def _install_requires() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / 'setup.cfg')
    lines = config['options']['install_requires'].strip().splitlines()
    return [re.match(r'[A-Za-z0-9_.-]+', line.strip()).group(0).lower() for line in lines
            if line.strip()]


def _imported_top_levels() -> set[str]:
    names = set()
    for path in PACKAGE.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split('.')[0].lower() for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split('.')[0].lower())
    return names


def test_every_install_requirement_is_imported_by_the_package():
    """A requirement must earn its place at runtime; test peers go in the tests extra."""
    assert set(_install_requires()) <= _imported_top_levels()
