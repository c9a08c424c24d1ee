"""What a replayed cell runs in nbval's kernel (:func:`helpers.tools.nbval.nbval_replay`): its recorded outputs, again.

A module of its own, importing only what a kernel has already loaded, so that each of nbval's kernels starts
in a fraction of a second rather than loading papermill first.
"""

from __future__ import annotations

import json
import sys

from IPython.display import publish_display_data


def replay_outputs(outputs_json: str) -> None:
    """Emit a cell's recorded outputs again, in order, in a running kernel."""
    for output in json.loads(outputs_json):
        if output["output_type"] == "stream":
            stream = sys.stderr if output["name"] == "stderr" else sys.stdout
            stream.write(output["text"])
            stream.flush()
        elif output["output_type"] in ("display_data", "execute_result"):
            publish_display_data(output["data"], output.get("metadata", {}))
