"""``python -m helpers``: read the command line, start Keras (choosing the backend first), then run the command.

``--help`` and a mistyped or missing argument are answered by argparse before Keras and TensorFlow
import (a fraction of a second, not several). Everything from here on, the seconds Keras and
TensorFlow take to import included, turns a Ctrl-C into one line and exit code 130, and a missing
backend into one line and exit code 1.
"""

import sys


def _run() -> int:
    try:
        # the parser table imports no Keras: argparse's answers (exit 0 for --help, 2 for a mistake) come first
        from helpers.tools.cli import build_parser, main  # noqa: PLC0415 - inside the try: Ctrl-C is one line

        build_parser().parse_args()
        import helpers  # noqa: PLC0415 - inside the try: a Ctrl-C while Keras imports is one line, exit 130

        try:
            helpers.start()
        except helpers.BackendUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return main()  # its commands import Keras only now, after helpers.start() chose the backend
    except KeyboardInterrupt:
        print("\ninterrupted while starting: nothing was written", file=sys.stderr)
        return 130


sys.exit(_run())
