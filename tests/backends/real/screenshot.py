"""Draw the README's picture: the demo's failing request in Zipkin's own web UI.

``python -m tests.backends.real.screenshot [OUT.png]`` starts the cached Zipkin
(see :mod:`tests.backends.real.servers`), runs the demo's services reporting to it, and
has headless Chromium (Debian's ``chromium``) load the trace page and save a PNG
(default: ``zipkin-ui.png`` beside this file). Zipkin's UI is a single-page app that
fetches the trace after the page loads, so Chromium gets a virtual-time budget to let
those requests finish before the picture is taken.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

from .servers import ZipkinServer, zipkin_jar
from .traces import Path, run_scenario

_DEFAULT = pathlib.Path(__file__).with_name('zipkin-ui.png')
_TIMEOUT = 120.0


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = pathlib.Path(args[0]) if args else _DEFAULT
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None:
        print('error: chromium is not installed (apt-get install chromium)', file=sys.stderr)
        return 1
    with ZipkinServer(zipkin_jar(echo=True)) as zipkin:
        outcome = run_scenario(Path('zipkin', 'zipkin-json'), zipkin)['failing']
        url = f'{zipkin.url}/zipkin/traces/{outcome.trace_id}'
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [chromium, '--headless', '--no-sandbox', '--disable-gpu',
                 '--hide-scrollbars', f'--user-data-dir={profile}', '--window-size=1400,640',
                 '--virtual-time-budget=15000', f'--screenshot={out.resolve()}', url],
                check=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f'{url}\n  -> {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
