"""What the notebook runner's kernels run before a notebook's first cell (ipykernel's ``exec_lines``).

:func:`prepare` starts Keras the workbook's way (:func:`helpers.start`), counts the forward passes of
``keras.Model.fit/evaluate/predict`` into ``$WORKBOOK_PASS_LOG`` (:func:`helpers.store.counting.count_keras_calls`)
and notes the kernel's backend and device for the book (:func:`helpers.store.numbers.record`). Only the
runner's kernels run it (:data:`EXEC_LINE`, in :data:`helpers.tools.notebooks.KERNEL_ARGUMENTS`):
``import helpers`` changes nothing in Keras or the process, in JupyterLab, a script or a test.
"""

from __future__ import annotations

import os

import helpers
from helpers.store.numbers import NUMBERS_ENV, record

#: The line ipykernel runs in each kernel the runner starts (``--IPKernelApp.exec_lines``).
EXEC_LINE = "import helpers.tools.kernel as _workbook_kernel; _workbook_kernel.prepare(); del _workbook_kernel"


def prepare() -> None:
    """Start Keras quietly, count Keras' forward passes, note backend and device: once per kernel."""
    helpers.start()
    from helpers.store import counting  # noqa: PLC0415 - it imports Keras, which helpers.start() must start first

    counting.count_keras_calls()
    record_setup()


def record_setup() -> None:
    """Record the Keras backend and the device the kernel computes on (for the book's index)."""
    if not os.environ.get(NUMBERS_ENV):
        return
    try:
        from helpers.run import device  # noqa: PLC0415 - it imports Keras, which helpers.start() must start first

        found = device.gpus()
        record(backend=device.backend(), device=("GPU: " + ", ".join(found)) if found else "CPU")
    except Exception:  # noqa: BLE001 - a device probe must never stop a notebook
        pass
