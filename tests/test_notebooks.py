"""The notebooks: stored clean, well-formed, and executed headless in quick mode.

Every notebook is executed once, by the runner (papermill) with the quick-mode parameters
(any failing cell fails the test), and checked by nbval in lax mode: the cells marked
``# NBVAL_CHECK_OUTPUT`` must print what is stored in the notebook; nbval compares that run's
outputs (``notebooks.nbval_replay``) instead of executing the notebook a second time. Both
need the real photos and weights (``WORKBOOK_DATA``, ``WORKBOOK_WEIGHTS_DIR``) and skip
without them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.settings import PROJECT_ROOT
from helpers.store import passes
from helpers.tools import notebooks

NOTEBOOKS = notebooks.notebook_paths()
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
ids = [p.stem for p in NOTEBOOKS]


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]


# --- stored form ------------------------------------------------------------------------


def test_stored_notebooks_are_clean():
    dirty = notebooks.dirty_notebooks(NOTEBOOKS)
    assert not dirty, f"not clean: {[p.name for p in dirty]}; run: python -m helpers clean-notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_shape(path):
    """Markdown before every code cell, a tiny first cell, a parameters cell, questions at the end."""
    cells = nbformat.read(str(path), as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    for before, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", f"code cell without a sentence before it:\n{cell.source}"
    first = next(c for c in cells if c.cell_type == "code")
    lines = [line for line in first.source.splitlines() if line.strip()]
    tiny = all("import" in line or line.startswith("helpers.start()") for line in lines)
    assert len(lines) <= 6 and tiny, f"first code cell not tiny:\n{first.source}"
    assert "helpers.start()" in first.source, "the first cell starts Keras the workbook's way (import alone does not)"
    assert "helpers" in first.source
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert cells[-1].cell_type == "markdown" and "Questions" in cells[-1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_parameter_defaults_are_the_real_thing(path):
    declared = notebooks.declared_parameters(path)
    real = {
        "BACKBONE": '"InceptionV3"',
        "CLASSIFIER": '"InceptionV3"',
        "WEIGHTS": '"imagenet"',
        "DATA_DIR": "None",
        "IMAGE_SIZE": "None",
        "SEED": "0",
        "SEEDS": "[0, 1, 2]",
    }
    for name, default in real.items():
        if name in declared:
            assert declared[name] == default, f"{path.name}: {name} = {declared[name]}"


def test_notebook_04_fine_tunes_above_what_the_store_keeps_by_default():
    """03 stores the activations below the top CHECKPOINT_BLOCKS blocks so 04's default cut reads them back."""
    from helpers.store import cache

    [path] = [p for p in NOTEBOOKS if p.stem == "04_fine_tune"]
    declared = notebooks.declared_parameters(path)
    assert notebooks.parse_value(declared["FINE_TUNE_FROM"]) == cache.CHECKPOINT_BLOCKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_checked_cells_have_stored_outputs(path):
    checked = [c for c in code_cells(path) if notebooks.is_checked(c)]
    for cell in checked:
        assert cell.outputs, f"{path.name}: a # NBVAL_CHECK_OUTPUT cell has no stored output:\n{cell.source}"
        assert all(o.output_type != "error" for o in cell.outputs)
    if path.stem[:2] in {"00", "01", "02", "03", "04"}:
        assert checked, f"{path.name} has no cell for nbval to compare"


def test_quick_parameters_name_real_notebooks_and_parameters():
    by_stem = {p.stem: p for p in NOTEBOOKS}
    for stem, overrides in notebooks.QUICK_PARAMETERS.items():
        if stem == "*":  # applied where declared: each name must be declared somewhere, or it does nothing
            unused = {k for k in overrides if not any(k in notebooks.declared_parameters(p) for p in NOTEBOOKS)}
            assert not unused, f"QUICK_PARAMETERS['*'] sets {unused}, which no notebook declares"
            continue
        assert stem in by_stem, f"QUICK_PARAMETERS names {stem}, which is not a notebook"
        unknown = set(overrides) - set(notebooks.declared_parameters(by_stem[stem]))
        assert not unknown, f"{stem} does not declare {unknown}"


def test_the_readme_table_lists_every_notebook_in_order():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    listed = [line.split("`")[1] for line in readme.splitlines() if line.startswith("| `") and line.count("|") >= 3]
    assert [name for name in listed if name[:2].isdigit()] == [p.stem for p in NOTEBOOKS]


def _sources(stem: str) -> str:
    [path] = [p for p in NOTEBOOKS if p.stem == stem]
    return "\n".join(c.source for c in code_cells(path))


def test_the_core_steps_are_lesson_code_in_the_notebooks():
    """06–08 and the photos notebook write the Keras and scikit-learn calls out, not only helper calls."""
    own = _sources("05a_your_photos_and_augmentation")
    for call in (
        "keras.utils.image_dataset_from_directory(",
        "keras.layers.RandomFlip(",
        "keras.layers.RandomRotation(",
        "augment_copies=VIEWS",
        "pipeline.photo_dataset(",
    ):
        assert call in own, call
    evaluate = _sources("06_evaluate_and_explain")
    for call in (
        "classification_report(y_test, predicted",
        "confusion_matrix(y_test, predicted",
        "tf.GradientTape()",
        "tape.gradient(score, maps)",
        "explain.gradients(grad_model, images)",
        "imagenet.pixel_classifier(",
    ):
        assert call in evaluate, call
    export = _sources("08_export_and_predict")
    for call in (
        "model.save(keras_file)",
        'model.export(str(saved_model_dir), format="tf_saved_model"',
        "tf.lite.TFLiteConverter.from_saved_model(",
    ):
        assert call in export, call
    compare = _sources("07_compare_architectures")  # one backbone by hand before the package does them all
    for call in (
        "Backbone(include_top=False, weights=weights",
        'split_at(model, "pool")',
        "store.activations(bottom, data.train_paths)",
        "compile_model(top, 1e-3)",
        "top.fit(features, data.y_train",
        "top.predict(test_features",
        "def inference_ms_per_image(model, images, repeats=3):",
        "inference_ms_per_image(model, data.x_val",
        "model.count_params()",
        "model.save(saved)",
    ):
        assert call in compare, call
    assert compare.index("top.fit(") < compare.index("compare_backbones(")
    # notebook 01 and 06 pick the ImageNet classifier by one rule (helpers.model.imagenet.classifier_weights)
    assert "helpers.model.imagenet.classifier_weights(" in _sources("01_pretrained_model")
    assert "build_backbone(CLASSIFIER" not in evaluate


def test_notebook_04_saves_the_model_06_and_08_point_to():
    saved = "runs/04_fine_tune/model.keras"
    assert f'files.save_model(model, "{saved}")' in _sources("04_fine_tune")
    for stem in ("06_evaluate_and_explain", "08_export_and_predict"):
        [path] = [p for p in NOTEBOOKS if p.stem == stem]
        cells = nbformat.read(str(path), as_version=4).cells
        assert saved in cells[-1].source, f"{stem}'s questions do not point to notebook 04's model"


# --- executing the real notebooks (quick mode), once each -------------------------------
#
# The ``quick_workbook`` fixture (conftest.py) executes each notebook once, with the runner;
# the tests below share that run: papermill's verdict, then nbval's comparison of the checked
# cells' outputs against the stored ones (on an ``nbval_replay`` of the run: nbval compares
# with all its own machinery without executing the notebook a second time).


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_headless_in_quick_mode(path, quick_workbook):
    run = quick_workbook["runs"][path.stem]
    from conftest import WORKBOOK_PARAMETERS

    assert run.parameters == notebooks.parameters_for(path, quick=True, parameters=WORKBOOK_PARAMETERS)
    assert run.ok, f"{path.name} failed: {run.error} (see {run.output})"
    executed = nbformat.read(str(run.output), as_version=4)
    for cell in executed.cells:
        if notebooks.is_checked(cell):
            assert cell.outputs, f"checked cell printed nothing:\n{cell.source}"
    print(f"{path.name}: {run.seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.shared
def test_quick_workbook_summary_is_the_main_jobs_notebooks_json(quick_workbook):
    """The whole workbook in quick mode, as ``python -m helpers notebooks --quick`` writes it up."""
    summary, runs = quick_workbook["summary"], quick_workbook["runs"]
    assert summary["complete"] and summary["pending"] == []
    assert [n["name"] for n in summary["notebooks"]] == [p.stem for p in NOTEBOOKS] == list(runs)
    assert [n["ok"] for n in summary["notebooks"]] == [r.ok for r in runs.values()]
    for entry in summary["forward_passes"]:  # one per (backbone, size, weights) and kind (sums: test_passes.py)
        assert set(entry) == {"key", "kind", "distinct", "computed", "ratio"}
    print(json.dumps(summary["forward_passes"], indent=1))
    if set(runs) != {p.stem for p in NOTEBOOKS}:
        return  # a subset ran (-k): the whole-workbook counts below do not apply
    # From an empty store, each photo went through the frozen part once: up to the store's checkpoint
    # (below the top two blocks, where 04 fine-tunes), then on from there to the pooled features. Plain
    # Keras calls on pixels (lesson checks, timing the plain way, exports) add a little; per network,
    # everything is summed (helpers.store.passes.totals) and must stay within the 1.2 passes per photo.
    default = notebooks.QUICK_PARAMETERS["*"]
    [network] = [
        n
        for n in summary["forward_passes_per_network"]
        if n["key"]["backbone"].startswith("mobilenetv2_1.00") and n["key"]["image_size"] == default["IMAGE_SIZE"]
    ]
    print(json.dumps(summary["forward_passes_per_network"], indent=1))
    mine = {e["kind"]: e for e in summary["forward_passes"] if e["key"] == network["key"]}
    for kind, entry in mine.items():
        if kind.startswith("frozen, up to"):
            cut = kind.removeprefix("frozen, up to ")
            continued = sum(
                e["computed"]
                for k, e in mine.items()
                if k.startswith(passes.CONTINUED_PREFIX) and k.endswith(f", up to {cut}")
            )
            assert entry["computed"] + continued == entry["distinct"], (entry, continued)  # never twice at one cut
    assert mine["frozen, up to pool"]["distinct"] == network["distinct"]
    assert mine["frozen, up to block_15_add"]["computed"] == network["distinct"]  # 04's cut, stored by 03 and 05
    assert network["computed"] == sum(network["kinds"].values())
    assert network["ratio"] <= 1.2, network


def _printed(run) -> str:
    nb = nbformat.read(str(run.output), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
@pytest.mark.shared
def test_each_comparison_is_measured_over_several_seeds_and_worded_from_its_numbers(quick_workbook):
    """04 (head vs fine-tuned), 05a (with and without stored views) and 07 (backbones with few photos).

    Over the seeds the run was given (the notebooks' default is three, quick mode two: see
    ``test_parameter_defaults_are_the_real_thing``), each named in what the notebook prints.
    """
    runs = quick_workbook["runs"]
    seeds = {stem: run.parameters.get("SEEDS", [0, 1, 2]) for stem, run in runs.items()}
    checks = {
        "04_fine_tune": [
            f"over seeds {seeds.get('04_fine_tune')}",
            "fine-tuned at 1e-05",
            "fine-tuned at 0.01",
            "- 96 px:",
            "saved ",
        ],
        "05a_your_photos_and_augmentation": [
            f"over seeds {seeds.get('05a_your_photos_and_augmentation')}",
            "- 1 per class:",
            "- 2 per class:",
            " px, 2 per class:",
        ],
        "07_compare_architectures": [f"over {len(seeds.get('07_compare_architectures', ()))} draws, by mean:"],
        "05_small_data_short_time": ["first call:", "second call:", "the CNN from scratch"],
    }
    for stem, wanted in checks.items():
        if stem not in runs:
            continue
        if stem != "05_small_data_short_time":
            assert len(seeds[stem]) >= 2, f"{stem}: a comparison over one seed says nothing about the spread"
        text = _printed(_executed(quick_workbook, next(p for p in NOTEBOOKS if p.stem == stem)))
        for line in wanted:
            assert line in text, f"{stem}: {line!r} not printed"
        if stem != "05_small_data_short_time":  # a verdict for each comparison, from the numbers
            verdicts = ("No difference", "No consistent difference", "better than", "worse than")
            assert any(v in text for v in verdicts), f"{stem}: no verdict printed"


@pytest.mark.slow
@pytest.mark.shared
def test_the_quick_workbook_reads_as_a_book_in_a_real_browser(quick_workbook, tmp_path):
    """The executed quick workbook as a static HTML book (helpers.tools.book), opened in Chromium from file://.

    Here, and not in tests/test_book.py, so that it shares this file's one run of the workbook:
    every page loads with no console error, every figure of the executed notebooks is embedded
    and decodes, every link resolves, and the index carries each notebook's key numbers.
    """
    import keras
    from test_book import check_book_in_browser

    from helpers.tools import book

    runs = quick_workbook["runs"]
    out = book.build_book(quick_workbook["out"], tmp_path / "book")
    report = check_book_in_browser(out, "quick_workbook")
    assert report["pages"] == len(runs) + 1 and report["walked"] == len(runs), report
    figures = sum(
        "image/png" in output.get("data", {})
        for run in runs.values()
        if run.output.is_file()
        for cell in nbformat.read(str(run.output), as_version=4).cells
        for output in cell.get("outputs", [])
    )
    assert report["images"] == figures, f"{figures} figures in the executed notebooks, {report['images']} in the book"

    numbers = book.read_numbers(quick_workbook["out"] / book.NUMBERS)
    index = (out / "index.html").read_text()
    assert f"backend {keras.backend.backend()} · device " in index
    assert "forward passes per photo" in index
    for name, run in runs.items():
        assert numbers.get(name, {}).get("backend") == keras.backend.backend(), (name, numbers.get(name))
        assert f'href="{name}.html"' in index
        if not run.ok:
            assert "FAILED" in index and str(run.error).split(":")[0] in index
    expected = {  # the key number each notebook's own helpers record
        "03_train_the_head": "accuracy",
        "04_fine_tune": "accuracy_after",
        "05_small_data_short_time": "transfer_accuracy_1_per_class",
        "06_evaluate_and_explain": "accuracy",
        "07_compare_architectures": "accuracy of mobilenet_v2",
    }
    for name, key in expected.items():
        if name in runs and runs[name].ok:
            value = numbers[name][key]
            assert 0 <= value <= 1 and book.format_number(key, value) in index, (name, numbers[name])
    least = {"03_train_the_head": 2, "04_fine_tune": 1, "05_small_data_short_time": 1}  # curves, predictions, plot
    for name, n in least.items():
        if name in runs and runs[name].ok:
            page = (out / f"{name}.html").read_text()
            figures = re.findall(r'<img[^>]+src="data:image/png;base64,', page)
            assert len(figures) >= n, f"{name}: {len(figures)} figures, {n} expected at least"
            assert "&lt;Figure size" not in page, f"{name}: a figure shown as its repr, not as a picture"


def _nbval(
    stored: Path, executed: Path, tmp_path: Path, parameters: dict | None = None, edit=None
) -> subprocess.CompletedProcess:
    """Run nbval --nbval-lax on the replay of ``executed`` against ``stored``'s outputs (see nbval_replay)."""
    return _nbval_all([(stored.name, stored, executed, parameters, edit)], tmp_path)


def _nbval_all(replays: list[tuple], tmp_path: Path) -> subprocess.CompletedProcess:
    """One ``pytest --nbval-lax`` over several replays, each ``(file name, stored, executed, parameters, edit)``.

    One process for all of them: nbval still starts one kernel per notebook, but pytest starts once.
    :func:`nbval_outcomes` reads each notebook's result from the ``-rA`` summary."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, stored, executed, parameters, edit in replays:
        nbformat.write(notebooks.nbval_replay(stored, executed, parameters, edit=edit), str(tmp_path / name))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            *[str(tmp_path / name) for name, *_ in replays],
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120 + 60 * len(replays),
    )


def nbval_outcomes(stdout: str) -> dict[str, set[str]]:
    """``{notebook file: {"PASSED", "FAILED", ...}}`` from the ``-rA`` summary of :func:`_nbval_all`."""
    found: dict[str, set[str]] = {}
    for outcome, name in re.findall(r"^(PASSED|FAILED|ERROR) (\S+?\.ipynb)::", stdout, re.MULTILINE):
        found.setdefault(name, set()).add(outcome)
    return found


def _executed(quick_workbook, path: Path):
    run = quick_workbook["runs"][path.stem]
    if not run.ok:
        pytest.fail(
            f"{path.name} did not run ({run.error}), so there is nothing to compare; "
            "see test_notebook_runs_headless_in_quick_mode"
        )
    return run


#: A copy of 00's replay whose stored class list is wrong: nbval must fail on it (the comparison is real).
BROKEN = "broken_00_setup_and_devices.ipynb"


def _break_class_names(nb) -> None:
    cell = next(c for c in nb.cells if notebooks.is_checked(c) and "class_names" in c.source)
    cell.outputs[0].text = "['cat', 'dog']\n"


@pytest.fixture(scope="module")
def nbval_run(quick_workbook, tmp_path_factory) -> subprocess.CompletedProcess:
    """nbval over the replay of every notebook that ran to the end, and over :data:`BROKEN`, in one pytest process
    (a notebook that failed has nothing to replay: its own tests say so, through :func:`_executed`)."""
    runs = {stem: run for stem, run in quick_workbook["runs"].items() if run.ok}
    replays = [(p.name, p, runs[p.stem].output, runs[p.stem].parameters, None) for p in NOTEBOOKS if p.stem in runs]
    first = next((p for p in NOTEBOOKS if p.stem.startswith("00") and p.stem in runs), None)
    if first is not None:
        replays.append((BROKEN, first, runs[first.stem].output, runs[first.stem].parameters, _break_class_names))
    return _nbval_all(replays, tmp_path_factory.mktemp("nbval"))


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_checked_outputs_match_under_nbval(path, quick_workbook, nbval_run):
    _executed(quick_workbook, path)
    outcomes = nbval_outcomes(nbval_run.stdout)
    assert outcomes.get(path.name) == {"PASSED"}, (
        f"{path.name}: {outcomes.get(path.name)}\n" + nbval_run.stdout[-6000:] + nbval_run.stderr[-2000:]
    )


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem.startswith("00")], ids=lambda p: p.stem)
def test_nbval_fails_when_a_checked_output_changes(path, quick_workbook, nbval_run):
    """The comparison is real: a wrong stored class list makes nbval fail on that copy, and only on it."""
    _executed(quick_workbook, path)
    outcomes = nbval_outcomes(nbval_run.stdout)
    assert "FAILED" in outcomes.get(BROKEN, set()) and outcomes.get(path.name) == {"PASSED"}, outcomes
    assert "Cell outputs differ" in nbval_run.stdout and "['cat', 'dog']" in nbval_run.stdout


# --- what a learner sees: figures as images, no noise ----------------------------------

#: A cell that draws: a plot helper of the workbook, or pyplot / imshow called directly.
PLOTTING_CALL = re.compile(
    r"\b(plots|curves|evaluate|explain|compare|small_data)\.(plot|show|draw)_\w*\(|\bplt\.\w+\(|\.imshow\("
)
#: What no output of an executed notebook may contain, and why.
NOISE = [
    (re.compile(r"<Figure size|<matplotlib\.|<keras\.src|\bPosixPath\(|\bWindowsPath\("), "a text repr"),
    (re.compile(r"(?<![\w.])/tmp/|/pytest-of-|/var/folders/"), "a temporary path"),
    (re.compile(r"\b[0-9a-f]{20,}\b"), "a hash (a cache folder or file name)"),
    (re.compile(r"Downloading data from"), "Keras' download log"),
    (re.compile(r"Traceback \(most recent call last\)"), "a traceback"),
    (re.compile(r"^.*\w*Warning\b.*$", re.MULTILINE), "a warning"),
    (re.compile(r"(?<![\d.])0%\|"), "a progress bar stuck at 0%"),
]


def output_texts(output) -> list[str]:
    """The text a learner reads in one output: a stream, a value's text (when nothing richer shows), an error."""
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return ["\n".join(output.traceback) or f"{output.ename}: {output.evalue}"]
    data = output.get("data", {})
    if "image/png" in data or "text/html" in data or "text/markdown" in data:
        return [data.get("text/plain", "")] if "<Figure" in data.get("text/plain", "") else []
    return [data.get("text/plain", "")]


#: The activation store's line before it computes: one per fetch is news, a loop's worth of them is a log.
STORE_LINE = "bottleneck cache: computing"
STORE_LINES_PER_CELL = 3  # 03 fetches the training, validation and test photos' features in one cell


def what_a_learner_should_not_see(executed: Path, replace: dict[str, str] | None = None) -> list[str]:
    """Every figure shown only as text, plotting cell without an image, and noisy line in an executed notebook."""
    problems = []
    nb = nbformat.read(str(executed), as_version=4)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        first = (cell.source.strip().splitlines() or [""])[0][:50]
        where = f"{executed.name}, code cell {number} ({first})"
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        if PLOTTING_CALL.search(cell.source) and not images:
            problems.append(f"{where}: draws, but shows no image")
        store_lines = sum(text.count(STORE_LINE) for output in cell.outputs for text in output_texts(output))
        if store_lines > STORE_LINES_PER_CELL:
            problems.append(f"{where}: the store's log, {store_lines} lines of {STORE_LINE!r}")
        for output in cell.outputs:
            for text in output_texts(output):
                for old, new in (replace or {}).items():
                    text = text.replace(old, new)
                for pattern, what in NOISE:
                    found = pattern.search(text)
                    if found:
                        problems.append(f"{where}: {what}: {found.group(0).strip()[:120]!r}")
    return problems


def test_the_learners_view_check_catches_text_figures_missing_images_and_noise(tmp_path, capfd):
    """A real kernel, run by the runner: plot helpers show one image; the check names each kind of noise."""
    src = tmp_path / "src"
    src.mkdir()
    cells = [
        "from helpers.show import curves\ncurves.plot_history({'loss': [1.0, 0.5], 'val_loss': [1.1, 0.7]});",
        "from matplotlib.figure import Figure\nimport numpy as np\nfig = Figure()\nfig.subplots().imshow(np.eye(2));",
        "fig",
        "from pathlib import Path\nPath('/tmp/x/pool-96px-0123456789abcdef01234567')",
        "print('Downloading data from https://example.org/w.h5')\nimport warnings\nwarnings.warn('careful')",
        "import sys\nprint('bottleneck:   0%|          | 0/15', file=sys.stderr)\ncurves.plot_history.__doc__",
        "for n in range(4):\n    print(f'bottleneck cache: computing {n + 1} activations at pool')",
    ]
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# tiny"),
            nbformat.v4.new_code_cell("VALUE = 1", metadata={"tags": ["parameters"]}),
        ]
        + [nbformat.v4.new_code_cell(c) for c in cells]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(src / "00_noisy.ipynb"))
    [run] = notebooks.run_notebooks(tmp_path / "out", notebooks_dir=src, log=None)
    assert run.ok, run.error
    assert "without encryption" not in capfd.readouterr().err  # the runner's kernels keep their log to errors
    executed = nbformat.read(str(run.output), as_version=4)
    shown = executed.cells[2].outputs
    assert [o.output_type for o in shown] == ["display_data"] and "image/png" in shown[0].data  # once, as a PNG
    problems = "\n".join(what_a_learner_should_not_see(run.output))
    assert "code cell 1" not in problems  # the helper's figure: fine
    for cell, what in [
        (2, "draws, but shows no image"),
        (3, "a text repr: '<Figure size"),
        (4, "a text repr: 'PosixPath("),
        (4, "a temporary path"),
        (4, "a hash"),
        (5, "Keras' download log"),
        (5, "a warning"),
        (6, "a progress bar stuck at 0%"),
        (7, "the store's log, 4 lines"),
    ]:
        assert any(
            line.startswith(f"00_noisy.ipynb, code cell {cell} ") and what in line for line in problems.splitlines()
        ), (
            cell,
            what,
            problems,
        )


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_a_learner_sees_every_figure_and_no_noise(path, quick_workbook):
    """Every figure appears as an image; no text reprs, temporary or hashed paths, download logs, tracebacks,
    warnings or progress bars stuck at 0%. The folders this session chose are read as what they stand for:
    the activation store's root (a temporary folder here; ``~/.cache/…`` in a learner's run), the photo
    and weight folders (``../shared`` beside a clone that may itself live under /tmp), the project."""
    run = _executed(quick_workbook, path)
    chosen = {
        str(quick_workbook["out"] / "cache"): "$WORKBOOK_CACHE",
        os.environ.get("WORKBOOK_DATA", ""): "$WORKBOOK_DATA",
        os.environ.get("WORKBOOK_WEIGHTS_DIR", ""): "$WORKBOOK_WEIGHTS_DIR",
        str(Path(__file__).resolve().parents[1]): "$PROJECT",
    }
    chosen = {folder: name for folder, name in sorted(chosen.items(), key=lambda kv: -len(kv[0])) if folder}
    problems = what_a_learner_should_not_see(run.output, chosen)
    assert not problems, "\n".join(problems)
