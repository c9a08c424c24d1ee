"""``python -m helpers``: read the command line, choose the Keras backend, then run the command.

``--help`` and a mistyped or missing argument are answered by argparse before Keras and TensorFlow
import (a fraction of a second, not several); a missing backend is one line and exit code 1. The
command starts Keras when it needs it (:func:`helpers.tools.cli.main`): the photo checks and the
notebook runner never do, and ``train`` only once its checks have passed. From here on, the
seconds Keras and TensorFlow take to import included, a Ctrl-C is one line and exit code 130.
"""

import sys


def _run() -> int:
    try:
        # the parser table imports no Keras: argparse's answers (exit 0 for --help, 2 for a mistake) come first
        from helpers.tools.cli import build_parser, main  # noqa: PLC0415 - inside the try: Ctrl-C is one line

        build_parser().parse_args()
        import helpers  # noqa: PLC0415 - inside the try: a Ctrl-C while Keras imports is one line, exit 130

        try:
            helpers.choose_backend()  # before any Keras import: the kernels the runner starts inherit the choice
        except helpers.BackendUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return main()  # a command that needs Keras starts it (helpers.start()) and only then imports it
    except KeyboardInterrupt:
        print("\ninterrupted while starting: nothing was written", file=sys.stderr)
        return 130


sys.exit(_run())
