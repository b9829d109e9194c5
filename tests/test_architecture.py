"""Keep the dependency arrows honest by reading the package's imports and calls."""

from __future__ import annotations

import ast
import os
import pathlib
import pkgutil
import subprocess
import sys
import sysconfig

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'falcon_tracing_wsgi'


def _stdlib_names() -> frozenset[str]:
    """The standard library's top-level module names (``sys.stdlib_module_names``, 3.10+).

    Python 3.9 has no such list: there a name is the standard library's when it is built
    in or found in the standard library's directory, not in site-packages.
    """
    names = getattr(sys, 'stdlib_module_names', None)
    if names is not None:
        return frozenset(names)
    stdlib = sysconfig.get_paths()['stdlib']
    found = set(sys.builtin_module_names)
    for module in pkgutil.iter_modules([stdlib, os.path.join(stdlib, 'lib-dynload')]):
        found.add(module.name)
    return frozenset(found)


STDLIB = _stdlib_names()


def modules():
    for path in sorted(PACKAGE.rglob('*.py')):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def imported(tree, relative_to):
    """Absolute top-level names imported by a module (package-relative ones resolved)."""
    names = set()
    package = ['falcon_tracing_wsgi', *relative_to.split('/')[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
                if node.module is None:
                    names.update(f'{module}.{alias.name}' for alias in node.names)
                else:
                    names.add(module)
            else:
                names.add(node.module)
    return names


ALL = dict(modules())


def owners(predicate):
    return sorted(name for name, tree in ALL.items() if predicate(name, tree))


def test_middleware_imports_only_stdlib_and_opentracing():
    allowed_internal = {'falcon_tracing_wsgi._wsgi', 'falcon_tracing_wsgi.config',
                        'falcon_tracing_wsgi._redact', 'falcon_tracing_wsgi._types',
                        'falcon_tracing_wsgi._semconv',  # the tag-name table (a leaf)
                        'falcon_tracing_wsgi._keys',  # shared environ keys (a leaf)
                        'falcon_tracing_wsgi.integrations.falcon',  # lazily, for Falcon apps
                        # the environ-level fast path for this package's own tracer
                        'falcon_tracing_wsgi.tracer.tracer', 'falcon_tracing_wsgi.tracer.span',
                        'falcon_tracing_wsgi.tracer.context',
                        # resetting any scope manager after the app ran
                        'falcon_tracing_wsgi.tracer.scope'}
    for module in ('middleware.py', '_wsgi.py', '_redact.py', 'config.py'):
        for name in imported(ALL[module], module):
            top = name.split('.')[0]
            assert top in STDLIB or top == 'opentracing' or name in allowed_internal, \
                (module, name)


def test_only_the_falcon_integration_imports_falcon():
    # The demo's example services are Falcon apps by design (not library code).
    importers = owners(lambda n, t: any(i.split('.')[0] == 'falcon' for i in imported(t, n)))
    assert [n for n in importers if not n.startswith('demo/')] == ['integrations/falcon.py']


def test_the_tracer_knows_no_reporter():
    for name, tree in ALL.items():
        if name.startswith('tracer/'):
            assert not any(('zipkin' in i or 'export' in i or 'bootstrap' in i)
                           for i in imported(tree, name)), name


def test_propagation_does_not_import_the_tracer_or_reporters():
    for name, tree in ALL.items():
        if name.startswith('propagation/'):
            bad = [i for i in imported(tree, name) if i.startswith('falcon_tracing_wsgi.')
                   and not i.startswith(('falcon_tracing_wsgi.propagation',
                                         'falcon_tracing_wsgi.tracer.context',
                                         'falcon_tracing_wsgi._types'))]
            assert bad == [], name


#: The wire-format modules of the export pipeline: pure functions of a span (no I/O).
FORMATS = sorted(name for name in ALL if name in ('export/zipkin.py', 'export/xray.py',
                                                   'export/otlp.py')
                 or name.startswith('export/otlp/'))


@pytest.mark.parametrize('module', FORMATS)
def test_wire_formats_are_pure(module):
    impure = {'socket', 'threading', 'http', 'urllib', 'logging', 'os'}
    names = imported(ALL[module], module)
    assert {i.split('.')[0] for i in names} & impure == set()
    # formats know nothing of transports or of the pipeline
    assert not any(i.startswith('falcon_tracing_wsgi.export.')
                   and i.split('.')[2] in ('http', 'file', 'udp', 'pipeline') for i in names)


def test_the_pipeline_knows_no_format_or_transport():
    names = imported(ALL['export/pipeline.py'], 'export/pipeline.py')
    assert not any(i.startswith('falcon_tracing_wsgi.') and not i.startswith(
        ('falcon_tracing_wsgi._types', 'falcon_tracing_wsgi._sync',
         'falcon_tracing_wsgi.export._framing')) for i in names), names


def _reads_environ(name, tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ('environ', 'getenv') \
                and isinstance(node.value, ast.Name) and node.value.id == 'os':
            return True
    return False


def test_only_config_reads_the_environment():
    assert owners(_reads_environ) == ['config.py']


def _calls(attr):
    def predicate(name, tree):
        return any(isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == attr)
            or (isinstance(node.func, ast.Name) and node.func.id == attr))
            for node in ast.walk(tree))
    return predicate


def test_only_bootstrap_installs_the_global_tracer():
    assert owners(_calls('set_global_tracer')) == ['bootstrap.py']


def test_no_print_in_library_code():
    cli = {'__main__.py', '_cli.py'}
    assert [n for n in owners(_calls('print')) if n not in cli
            and not n.startswith('demo/')] == []


@pytest.mark.parametrize('module', sorted(
    'falcon_tracing_wsgi.' + name[:-3].replace('/', '.').replace('.__init__', '')
    for name in ALL if name != '__main__.py'))
def test_import_starts_no_thread(module):
    """Importing any module starts no thread (fork safety) and prints nothing."""
    code = (f'import threading, {module}; '
            'assert threading.active_count() == 1, threading.enumerate()')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ''


def _module_name(path):
    name = 'falcon_tracing_wsgi.' + path[:-3].replace('/', '.')
    return name[:-len('.__init__')] if name.endswith('.__init__') else name


def import_graph(sources):
    """``module -> the package modules it imports`` (anywhere: top level, function bodies
    and ``TYPE_CHECKING`` blocks alike), from ``{relative path: ast}``."""
    names = {_module_name(path): path for path in sources}
    graph = {}
    for module, path in names.items():
        deps = set()
        for name in imported(sources[path], path):
            # NOTE: ``from falcon_tracing_wsgi import __version__`` reads the one constant
            # the package defines before its own imports; it is not an arrow up.
            if name == 'falcon_tracing_wsgi.__version__':
                continue
            while name and name not in names:
                name = name.rpartition('.')[0]
            if name and name != module:
                deps.add(name)
        graph[module] = deps
    return graph


def import_circles(graph):
    """The circles of ``graph``, each as the sorted list of its modules."""
    circles, path, done = [], [], set()

    def visit(module):
        if module in path:
            circle = sorted(path[path.index(module):])
            if circle not in circles:
                circles.append(circle)
            return
        if module in done:
            return
        path.append(module)
        for dep in sorted(graph[module]):
            visit(dep)
        path.pop()
        done.add(module)
    for module in sorted(graph):
        visit(module)
    return circles


@pytest.mark.parametrize('sources, expected', [
    pytest.param({'a.py': 'from . import b', 'b.py': 'import os'}, [], id='no-circle'),
    pytest.param({'a.py': 'from . import b', 'b.py': 'def f():\n    from .a import x'},
                 [['falcon_tracing_wsgi.a', 'falcon_tracing_wsgi.b']], id='lazy-import'),
    pytest.param({'a.py': 'from .b import x', 'b.py': 'from typing import TYPE_CHECKING\n'
                  'if TYPE_CHECKING:\n    from .a import y'},
                 [['falcon_tracing_wsgi.a', 'falcon_tracing_wsgi.b']], id='type-checking'),
    pytest.param({'p/__init__.py': 'from .m import x', 'p/m.py': 'from ..q import y',
                  'q.py': 'from .p.m import z'},
                 [['falcon_tracing_wsgi.p.m', 'falcon_tracing_wsgi.q']], id='subpackage'),
])
def test_the_circle_finder_finds_circles(sources, expected):
    trees = {path: ast.parse(text) for path, text in sources.items()}
    assert import_circles(import_graph(trees)) == expected


def test_no_import_circle():
    """Shared constants live below the modules that use them (``_keys.py``), and the
    span reads its tracer through a protocol: no two modules import each other."""
    assert import_circles(import_graph(ALL)) == []
