"""README.rst is valid reStructuredText (it is the package's long description)."""

from __future__ import annotations

import pathlib

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / 'README.rst'


def test_readme_renders_without_warnings():
    core = pytest.importorskip('docutils.core')
    messages = []
    document = core.publish_doctree(README.read_text(), settings_overrides={
        'report_level': 5, 'halt_level': 5})
    for node in document.findall():
        if node.tagname == 'system_message' and node['level'] >= 2:
            messages.append(node.astext())
    assert messages == []
