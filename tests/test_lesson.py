"""The lesson's Keras lines: exported once from the notebooks, and enough on their own.

- ``helpers/model/lesson.py`` is exactly what the notebooks' ``#@save`` cells say (the drift test);
- the cells tagged ``lesson`` in notebooks 02–04, copied into an empty notebook with only
  a parameters cell, train the classifier without ``helpers`` except for loading photos,
  storing activations and cutting inside the base (the machinery of ``MACHINERY``), and
  reach ≥ 97% accuracy on the test photos (not the validation photos, which chose the epochs)
  with 10 photos per class (MobileNetV2, real weights).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

import helpers
from helpers.tools import lesson_export
from helpers.tools.notebooks import kernel_environment, notebook_paths

LESSON_NOTEBOOKS = ("02", "03", "04")


def test_lesson_module_matches_the_notebooks():
    wanted = lesson_export.lesson_source()
    stored = lesson_export.LESSON_FILE.read_text(encoding="utf-8")
    assert stored == wanted, "helpers/model/lesson.py differs from the #@save cells: run python -m helpers sync-lesson"


def test_drift_is_detected(tmp_path):
    """Change one #@save cell in a copy of the notebooks: the check must fail, sync must repair."""
    copies = tmp_path / "notebooks"
    copies.mkdir()
    for path in notebook_paths():
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if (
                cell.cell_type == "code"
                and cell.source.startswith(lesson_export.SAVE_MARK)
                and "def add_head" in cell.source
            ):
                cell.source = cell.source.replace("dropout=0.2", "dropout=0.5")
        nbformat.write(nb, str(copies / path.name))
    target = tmp_path / "lesson.py"
    target.write_text(lesson_export.LESSON_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    assert not lesson_export.sync(check=True, target=target, notebooks_dir=copies)
    lesson_export.sync(target=target, notebooks_dir=copies)
    assert "dropout=0.5" in target.read_text(encoding="utf-8")
    assert lesson_export.sync(check=True, target=target, notebooks_dir=copies)


def test_every_saved_function_names_its_notebook_and_is_plain_keras():
    source = lesson_export.LESSON_FILE.read_text(encoding="utf-8")
    tree = ast.parse(source)
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    lesson = {"preprocessing_for", "add_head", "compile_model", "fit_keep_best", "unfreeze_above", "split_at"}
    assert lesson | {"start_at_class_means", "inference_ms_per_image"} <= set(functions)
    for name in functions:
        assert re.search(rf"# Defined in notebooks/\d\d_\w+\.ipynb\ndef {name}\(", source), name
    imports = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert imports == {"time", "keras", "numpy"} and "tf.keras" not in source and "from helpers" not in source


def lesson_cells() -> list[str]:
    cells = []
    for path in notebook_paths(only=LESSON_NOTEBOOKS):
        cells += [
            c.source
            for c in nbformat.read(str(path), as_version=4).cells
            if c.cell_type == "code" and "lesson" in c.metadata.get("tags", [])
        ]
    return cells


#: What lesson cells may call from the package: the photo loader, the activation store, cutting
#: inside the nested base, and the name → Keras class table (machinery, each behind one call);
#: everything else there is plain Keras.
MACHINERY = ("photos.", "cache.BottleneckCache", "cuts.split_at", "backbones.application")


def test_lesson_cells_use_helpers_only_for_photos_the_store_and_cutting():
    cells = lesson_cells()
    assert len(cells) >= 10
    for source in cells:
        for match in re.finditer(r"\b(helpers|cuts|cache|backbones|plots|curves|widgets|train|photos)(\.\w+)+", source):
            name = re.sub(rf"^helpers\.({'|'.join(helpers.GROUPS)})\.", "", match.group(0))  # the full name's group
            assert name.startswith(MACHINERY), f"lesson cell uses {match.group(0)}:\n{source}"


@pytest.mark.slow
@pytest.mark.shared
def test_lesson_cells_alone_train_the_classifier(tmp_path, shared_weights_dir, shared_photos):
    """An empty notebook: parameters, `import keras`, the photo loader, then only the lesson cells."""
    from conftest import MOBILENET_V2_FILE

    parameters = (
        f"BACKBONE = 'MobileNetV2'\nWEIGHTS = {str(shared_weights_dir / MOBILENET_V2_FILE)!r}\n"
        f"IMAGE_SIZE = 224\nDATA_DIR = {str(shared_photos)!r}\nPER_CLASS = 10\nSEED = 0\nEPOCHS = 15\n"
        "HEAD_EPOCHS = 15\nFINE_TUNE_EPOCHS = 2\nPATIENCE = 5\nLEARNING_RATE = 1e-3\n"
        "FINE_TUNE_LEARNING_RATE = 1e-5\nBATCH_SIZE = 32\nPOP_BLOCKS = 3\n"
        f"CUT = 'block_15_add'\nCACHE_DIR = {str(tmp_path / 'cache')!r}\n"
    )
    imports = (
        "import time\nimport keras\nimport numpy as np\n"
        "import helpers  # extra code: photos, the activation store, cutting, name → Keras class"
    )
    body = lesson_cells() + [
        "test_accuracy = np.mean(model.predict(data.x_test, verbose=0).argmax(-1) == data.y_test)  # whole model\n"
        "print('TEST_ACCURACY', test_accuracy, len(data.y_test))"
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [parameters, imports, *body]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    from nbclient import NotebookClient

    with kernel_environment():
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    text = "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )
    found = re.search(r"TEST_ACCURACY ([0-9.]+) (\d+)", text)
    accuracy, photos = float(found.group(1)), int(found.group(2))
    assert photos >= 60, f"only {photos} test photos"  # the 180 validation photos split into val and test
    assert accuracy >= 0.97, f"test accuracy {accuracy:.3f} on {photos} photos, with 10 photos per class"
    print(f"lesson cells alone: test accuracy {accuracy:.1%} on {photos} photos")
    package = re.findall(r"\bhelpers(?:\.\w+)+", "\n".join(body))  # only machinery, each behind one call
    assert all(re.sub(r"^helpers\.\w+\.", "", name).startswith(MACHINERY) for name in package), package
    nbformat.write(nb, str(Path(tmp_path) / "empty_notebook.ipynb"))
