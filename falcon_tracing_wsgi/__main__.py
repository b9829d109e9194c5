"""The command line: ``python -m falcon_tracing_wsgi`` (or the ``falcon-tracing`` script).

Commands:

``demo``
    Two Falcon services under real gunicorn, a local Zipkin v2 receiver, a handful
    of requests, and every trace printed as a waterfall (see
    :mod:`falcon_tracing_wsgi.demo`).
``view FILE``
    Draw the traces in a Zipkin v2 JSON file (an array, as Zipkin's API returns) or a
    JSON-lines file (what the ``log`` reporter writes); ``-`` reads standard input.

``--version`` prints the package's version.

Exit status: 0 success; 1 nothing to show (``view``: no span in the file; ``demo``:
no cross-service trace, or a service failed); 2 a usage error, an unreadable file or
a missing dependency; 130 interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any, Optional, TextIO

__all__ = ['main']

_EPILOG = """\
exit status: 0 success; 1 nothing to show (view: no span in the file; demo: no
cross-service trace, or a service failed); 2 usage error, unreadable file or
missing dependency; 130 interrupted.
"""


class _ShowVersion(Exception):
    """Raised by ``--version`` so that main() writes the version to its ``out``."""


class _VersionAction(argparse.Action):
    # NOTE: argparse's own 'version' action prints to sys.stdout and exits; this one lets
    # main() write to the stream it was given, like every other result.
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the package's version")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        raise _ShowVersion


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='falcon-tracing',
        description='falcon-tracing-wsgi: run the distributed tracing demo, or draw the '
                    'traces in a Zipkin span file as text waterfalls.',
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action=_VersionAction)
    commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)

    demo = commands.add_parser(
        'demo', help='two Falcon services under gunicorn, traced, shown as waterfalls',
        description='Start a local Zipkin v2 receiver and two Falcon services under real '
                    'gunicorn on 127.0.0.1, send a few requests, and print each trace as a '
                    'waterfall. Takes a few seconds; everything is stopped at the end.',
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_display_options(demo)

    view = commands.add_parser(
        'view', help='draw the traces in a Zipkin v2 JSON or JSON-lines file',
        description='Draw every trace in FILE as a waterfall: service, span name '
                    '(indented by depth), kind, timing bar, duration, status, ERROR. '
                    'FILE is a Zipkin v2 JSON array or one span per line (the log '
                    "reporter's output; a log prefix before the JSON is ignored).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    view.add_argument('file', metavar='FILE', help="the span file; '-' for standard input")
    _add_display_options(view)
    return parser


def _add_display_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--width', type=int, default=None, metavar='N',
                        help='line width (default: the terminal width, at most 160)')
    parser.add_argument('--color', choices=('auto', 'always', 'never'), default='auto',
                        help='colour by service, errors in red (default: auto, when '
                             'the output is a terminal)')


def _width(requested: Optional[int]) -> int:
    if requested is not None:
        return max(requested, 40)
    return min(max(shutil.get_terminal_size((100, 24)).columns, 80), 160)


def _color(choice: str, out: TextIO) -> bool:
    if choice == 'auto':
        isatty = getattr(out, 'isatty', None)
        return bool(isatty and isatty())
    return choice == 'always'


def _view(path: str, width: int, color: bool, out: TextIO, err: TextIO) -> int:
    from ._waterfall import group_traces, load_spans, render_trace

    try:
        loaded = load_spans(path)
    except OSError as exc:
        err.write(f'falcon-tracing view: cannot read {path}: {exc.strerror or exc}\n')
        return 2
    traces = group_traces(loaded.spans)
    for index, spans in enumerate(traces.values()):
        if index:
            out.write('\n')
        out.write(render_trace(spans, width=width, color=color) + '\n')
    if loaded.skipped:
        err.write(f'falcon-tracing view: {loaded.skipped} lines or items skipped '
                  '(not a Zipkin v2 span)\n')
    if not traces:
        err.write(f'falcon-tracing view: no spans found in {path}\n')
        return 1
    return 0


def main(argv: Optional[list[str]] = None, *, out: Optional[TextIO] = None,
         err: Optional[TextIO] = None) -> int:
    """Run the command line; return the exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        out: where results go (default: standard output).
        err: where messages go (default: standard error).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed
        return exc.code if isinstance(exc.code, int) else 2
    except _ShowVersion:
        from . import __version__
        out.write(f'falcon-tracing-wsgi {__version__}\n')
        return 0
    width = _width(args.width)
    color = _color(args.color, out)
    try:
        if args.command == 'view':
            return _view(args.file, width, color, out, err)
        from .demo import run
        return run(out, width=width, color=color)
    except KeyboardInterrupt:
        err.write('interrupted\n')
        return 130
    except BrokenPipeError:  # `... | head`: the reader went away; nothing more to say
        return 0


if __name__ == '__main__':
    sys.exit(main())
