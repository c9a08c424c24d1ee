"""``python -m helpers``: start Keras (choosing the backend first), then run the command line.

Everything from here on, the seconds Keras and TensorFlow take to import included, turns a
Ctrl-C into one line and exit code 130, and a missing backend into one line and exit code 1.
"""

import sys


def _run() -> int:
    try:
        import helpers  # noqa: PLC0415 - inside the try: a Ctrl-C while Keras imports is one line, exit 130

        try:
            helpers.start()
        except helpers.BackendUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        from helpers.tools.cli import main  # noqa: PLC0415 - after helpers.start(), which chose the backend

        return main()
    except KeyboardInterrupt:
        print("\ninterrupted while starting: nothing was written", file=sys.stderr)
        return 130


sys.exit(_run())
