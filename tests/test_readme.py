"""README.rst is valid reStructuredText (it is the package's long description)."""

from __future__ import annotations

import pathlib

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / 'README.rst'


def test_readme_renders_without_warnings():
    core = pytest.importorskip('docutils.core')
    import io
    # NOTE: some problems (an unknown link target) are found only by the transforms after
    # parsing, and reach only the warning stream, not the tree's system messages.
    warnings = io.StringIO()
    document = core.publish_doctree(README.read_text(), settings_overrides={
        'report_level': 2, 'halt_level': 5, 'warning_stream': warnings})
    messages = [node.astext() for node in document.findall()
                if node.tagname == 'system_message' and node['level'] >= 2]
    assert messages == []
    assert warnings.getvalue() == ''
