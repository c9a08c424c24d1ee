"""The notebook runner and the cleaning tool (helpers/tools/notebooks.py), on tiny notebooks in real kernels.

Parameters checked and injected, every notebook run in order with a failing, a slow, a dying and an
interrupted one (Ctrl-C), forward passes counted from the kernels, the stored form cleaned, and nbval's
replay of a run. The workbook's own notebooks, executed in quick mode, are tests/test_notebooks.py.
A file of their own, so that ``--dist loadfile`` can give them to the worker that is not running the workbook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_notebooks import NOTEBOOKS, _nbval

from helpers.settings import PROJECT_ROOT
from helpers.tools import notebooks


def test_parameters_for_injects_only_what_a_notebook_declares():
    nb01 = next(p for p in NOTEBOOKS if p.stem.startswith("01"))
    nb03 = next(p for p in NOTEBOOKS if p.stem.startswith("03"))
    assert notebooks.parameters_for(nb01, quick=True)["CLASSIFIER"] == "mobilenet_0.25"
    quick01 = notebooks.parameters_for(nb01, quick=True, backbone="resnet50")
    assert quick01["CLASSIFIER"] == "resnet50" and "BACKBONE" not in quick01  # one backbone throughout
    quick03 = notebooks.parameters_for(nb03, quick=True, backbone="ResNet50", parameters={"EPOCHS": 1, "NOPE": 2})
    assert quick03["BACKBONE"] == "resnet50" and quick03["EPOCHS"] == 1 and "NOPE" not in quick03
    assert notebooks.parameters_for(nb03, backbone="mobilenet_v2_0.35")["BACKBONE"] == "mobilenet_v2_0.35"  # widths too
    with pytest.raises(ValueError, match="unknown backbone"):
        notebooks.parameters_for(nb03, backbone="vgg99")
    assert quick03["IMAGE_SIZE"] == notebooks.QUICK_PARAMETERS["*"]["IMAGE_SIZE"]
    assert notebooks.parameters_for(nb03) == {}


def test_only_a_number_picks_that_notebook_not_its_lettered_neighbour(tmp_path):
    for name in ("05_small.ipynb", "05a_photos.ipynb", "06_eval.ipynb"):
        _tiny_notebook(tmp_path / name, "print(VALUE)")
    assert [p.stem for p in notebooks.notebook_paths(tmp_path, only=["05"])] == ["05_small"]
    assert [p.stem for p in notebooks.notebook_paths(tmp_path, only=["05a"])] == ["05a_photos"]
    assert [p.stem for p in notebooks.notebook_paths(tmp_path, only=["05", "06_e"])] == ["05_small", "06_eval"]
    assert [p.stem for p in notebooks.notebook_paths(tmp_path)] == ["05_small", "05a_photos", "06_eval"]


def test_parse_value_reads_literals_else_strings():
    assert notebooks.parse_value("3") == 3
    assert notebooks.parse_value("None") is None
    assert notebooks.parse_value("[1, 2]") == [1, 2]
    assert notebooks.parse_value("mixed7") == "mixed7"


@pytest.fixture
def plain_kernels(monkeypatch):
    """The runner's kernels without the workbook's start-up line (``helpers.start()`` and Keras' call counting:
    TensorFlow's import, ~4.5 s CPU per kernel), for the tests of the runner's own bookkeeping (order, failures,
    timeouts, dead kernels, parameters, pass logs), which tiny notebooks that use no Keras cannot tell apart.
    The Ctrl-C test keeps the real kernels (``python -m helpers notebooks``), as do tests/test_notebooks.py's."""
    plain = [a for a in notebooks.KERNEL_ARGUMENTS if "exec_lines" not in a]
    assert len(plain) == len(notebooks.KERNEL_ARGUMENTS) - 1, notebooks.KERNEL_ARGUMENTS
    monkeypatch.setattr(notebooks, "KERNEL_ARGUMENTS", plain)


def _tiny_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# tiny"),
            nbformat.v4.new_code_cell("VALUE = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(body),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_run_notebooks_runs_all_and_reports_the_failing_one(tmp_path, plain_kernels):
    src = tmp_path / "src"
    src.mkdir()
    _tiny_notebook(src / "00_ok.ipynb", "import helpers\nprint(VALUE * 2)")
    _tiny_notebook(src / "01_broken.ipynb", "raise RuntimeError(f'broken {VALUE}')")
    lines = []
    runs = notebooks.run_notebooks(tmp_path / "out", parameters={"VALUE": 21}, notebooks_dir=src, log=lines.append)
    assert [r.name for r in runs] == ["00_ok", "01_broken"]
    assert runs[0].ok and not runs[1].ok
    assert "RuntimeError: broken 21" in runs[1].error
    executed = nbformat.read(str(tmp_path / "out" / "00_ok.ipynb"), as_version=4)
    assert executed.cells[-1].outputs[0].text == "42\n"
    assert any("FAILED: 01_broken" in line for line in lines)
    summary = json.loads((tmp_path / "out" / "notebooks.json").read_text())
    assert [(r["name"], r["ok"], r["parameters"]) for r in summary["notebooks"]] == [
        ("00_ok", True, {"VALUE": 21}),
        ("01_broken", False, {"VALUE": 21}),
    ]
    assert summary["complete"] and summary["pending"] == [] and summary["forward_passes"] == []


def test_run_notebooks_goes_on_after_a_timeout_and_a_dead_kernel(tmp_path, plain_kernels):
    """A cell past the timeout and a kernel that dies are recorded with their cell; the next notebook runs."""
    src = tmp_path / "src"
    src.mkdir()
    _tiny_notebook(src / "00_slow.ipynb", "import time\ntime.sleep(60)")
    _tiny_notebook(src / "01_dies.ipynb", "import os\nos._exit(1)")
    _tiny_notebook(src / "02_ok.ipynb", "print(VALUE * 2)")
    lines, summaries = [], []
    out = tmp_path / "out"

    def log(line):  # notebooks.json is already rewritten when a notebook's result is logged
        lines.append(line)
        if ": running" not in line:
            summaries.append(json.loads((out / "notebooks.json").read_text()))

    runs = notebooks.run_notebooks(out, parameters={"VALUE": 21}, notebooks_dir=src, log=log, timeout=2)
    assert [(r.name, r.ok, r.timed_out) for r in runs] == [
        ("00_slow", False, True),
        ("01_dies", False, False),
        ("02_ok", True, False),
    ]
    assert runs[0].seconds < 30, "the timeout must stop the sleeping cell"
    # the third code cell: the parameters cell, papermill's injected one, then the body
    assert runs[0].cell == 3 and "cell 3 `import time`" in runs[0].error and "CellTimeoutError" in runs[0].error
    assert runs[1].cell == 3 and "cell 3 `import os`" in runs[1].error and "DeadKernelError" in runs[1].error
    executed = nbformat.read(str(out / "02_ok.ipynb"), as_version=4)
    assert executed.cells[-1].outputs[0].text == "42\n"
    assert any("FAILED: 00_slow (timed out), 01_dies" in line for line in lines)
    # a summary after each notebook: what ran so far, and what is still to run
    assert [([n["name"] for n in s["notebooks"]], s["pending"], s["complete"]) for s in summaries[:3]] == [
        (["00_slow"], ["01_dies", "02_ok"], False),
        (["00_slow", "01_dies"], ["02_ok"], False),
        (["00_slow", "01_dies", "02_ok"], [], True),
    ]
    final = json.loads((out / "notebooks.json").read_text())
    assert final["complete"] and [n["name"] for n in final["notebooks"]] == ["00_slow", "01_dies", "02_ok"]
    slow, dies, ok = final["notebooks"]
    assert slow["timed_out"] and not slow["ok"] and slow["cell"] == 3 and "timeout" in slow["error"]
    assert not dies["timed_out"] and "DeadKernelError" in dies["error"] and dies["parameters"] == {"VALUE": 21}
    assert ok["ok"] and ok["error"] is None and ok["seconds"] > 0


def test_run_notebooks_counts_forward_passes_from_the_kernels(tmp_path, monkeypatch, plain_kernels):
    """Kernels record passes into OUT/passes.jsonl (emptied first); notebooks.json sums them up."""
    monkeypatch.delenv("WORKBOOK_PASS_LOG", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    body = (
        "from helpers.store import passes\n"
        "key = {'backbone': 'mobilenet_v2', 'image_size': 96, 'weights': 'imagenet'}\n"
        "passes.record(key, IDS, COMPUTED)"
    )
    _tiny_notebook(src / "00_first.ipynb", body.replace("IDS", "['p1', 'p2', 'p3']").replace("COMPUTED", "3"))
    _tiny_notebook(
        src / "01_again.ipynb",
        body.replace("IDS", "['p2', 'p3', 'p4']").replace("COMPUTED", "1")
        + "\npasses.record(key, ['p1'], 1, kind='fine_tune')",
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "passes.jsonl").write_text('{"key": {"stale": 1}, "kind": "frozen", "photo_ids": ["x"], "computed": 9}\n')
    runs = notebooks.run_notebooks(out, notebooks_dir=src, log=None)
    assert all(r.ok for r in runs), [r.error for r in runs]
    key = {"backbone": "mobilenet_v2", "image_size": 96, "weights": "imagenet"}
    summary = json.loads((out / "notebooks.json").read_text())
    assert summary["forward_passes"] == [
        {"key": key, "kind": "frozen", "distinct": 4, "computed": 4, "ratio": 1.0},
        {"key": key, "kind": "fine_tune", "distinct": 1, "computed": 1, "ratio": 1.0},
    ]
    sources = [json.loads(line)["source"] for line in (out / "passes.jsonl").read_text().splitlines()]
    assert sources == ["00_first", "01_again", "01_again"]
    assert "WORKBOOK_PASS_LOG" not in os.environ, "the runner's own environment is left as it was"


def test_cli_notebooks_exits_non_zero_when_a_cell_fails(tmp_path, capsys, plain_kernels):
    from helpers.tools import cli

    src = tmp_path / "src"
    src.mkdir()
    _tiny_notebook(src / "00_broken.ipynb", "1 / 0")
    assert cli.main(["notebooks", "--notebooks-dir", str(src), "--out", str(tmp_path / "out")]) == 1
    assert "00_broken.ipynb: FAILED" in capsys.readouterr().out
    _tiny_notebook(src / "00_broken.ipynb", "print(VALUE)")
    assert cli.main(["notebooks", "--notebooks-dir", str(src), "-p", "VALUE", "7", "--out", str(tmp_path / "out")]) == 0


def test_cli_notebooks_timeout_fails_the_slow_one_runs_the_rest_and_names_it(tmp_path, capsys, plain_kernels):
    from helpers.tools import cli

    src = tmp_path / "src"
    src.mkdir()
    _tiny_notebook(src / "00_slow.ipynb", "import time\ntime.sleep(60)")
    _tiny_notebook(src / "01_ok.ipynb", "print(VALUE)")
    assert cli.main(["notebooks", "--notebooks-dir", str(src), "--timeout", "2", "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "01_ok.ipynb: ok" in captured.out
    assert "FAILED 00_slow: cell 2" in captured.err and "timeout" in captured.err
    summary = json.loads((tmp_path / "out" / "notebooks.json").read_text())
    assert [(n["name"], n["ok"], n["timed_out"]) for n in summary["notebooks"]] == [
        ("00_slow", False, True),
        ("01_ok", True, False),
    ]


def test_cli_notebooks_refuses_unknown_names_and_wrong_types_before_running_anything(tmp_path, capsys, plain_kernels):
    """Issue 17 (10): `-p VALUE abc` for `VALUE = 1`, or `-p NOPE 3`, is one line and exit 2; no kernel starts."""
    from helpers.tools import cli

    src = tmp_path / "src"
    src.mkdir()
    _tiny_notebook(src / "00_ok.ipynb", "print(VALUE)")
    for given, said in (
        (["VALUE", "abc"], "error: -p VALUE: must be a whole number, got 'abc'; nothing was run"),
        (["NOPE", "3"], "error: -p NOPE: not a parameter of 00_ok (they declare VALUE); nothing was run"),
        (["VALUES", "3"], "error: -p VALUES: not a parameter of 00_ok (did you mean VALUE?); nothing was run"),
    ):
        out = tmp_path / given[0]
        assert cli.main(["notebooks", "--notebooks-dir", str(src), "-p", *given, "--out", str(out)]) == 2
        assert capsys.readouterr().err.splitlines() == [said]
        assert not out.exists()  # refused before anything was written or run
    assert cli.main(["notebooks", "--notebooks-dir", str(src), "-p", "VALUE", "7", "--out", str(tmp_path / "ok")]) == 0
    executed = nbformat.read(str(tmp_path / "ok" / "00_ok.ipynb"), as_version=4)
    assert executed.cells[-1].outputs[0].text == "7\n"  # converted to the default's type


def test_check_parameters_reads_the_workbooks_parameters_cells():
    """Names and types come from the real notebooks' parameters cells (and PARAMETER_TYPES where wider)."""
    only03 = notebooks.notebook_paths(only=["03"])
    converted = notebooks.check_parameters(
        {"PER_CLASS": "7", "LEARNING_RATE": "1e-4", "WEIGHTS": "None", "BACKBONE": "ResNet50", "DATA_DIR": "/photos"},
        only03,
    )
    assert converted == {"PER_CLASS": 7, "LEARNING_RATE": 1e-4, "WEIGHTS": None, "BACKBONE": "ResNet50",
                         "DATA_DIR": "/photos"}  # fmt: skip
    assert notebooks.check_parameters({"FINE_TUNE_FROM": "mixed8"}, notebooks.notebook_paths(only=["04"])) == {
        "FINE_TUNE_FROM": "mixed8"
    }
    assert notebooks.check_parameters({"OTHER_BACKEND": "no", "PER_CLASS": None}, NOTEBOOKS) == {
        "OTHER_BACKEND": False,
        "PER_CLASS": None,
    }
    assert notebooks.check_parameters({"PER_CLASS_LIST": "[1, None]"}, NOTEBOOKS) == {"PER_CLASS_LIST": [1, None]}
    with pytest.raises(ValueError, match=r"PER_CLASS: must be None or a whole number, got 'abc'"):
        notebooks.check_parameters({"PER_CLASS": "abc"}, NOTEBOOKS)
    with pytest.raises(ValueError, match=r"OTHER_BACKEND: not a parameter of 03_train_the_head"):
        notebooks.check_parameters({"OTHER_BACKEND": False}, only03)  # declared by 08 only
    with pytest.raises(ValueError, match=r"EPOCHS: must be a whole number, got '2.5'.*SEEDS: must be a list"):
        notebooks.check_parameters({"EPOCHS": "2.5", "SEEDS": "3"}, NOTEBOOKS)
    for name in notebooks.PARAMETER_TYPES:  # every widened name is a real parameter
        assert any(name in notebooks.declared_parameters(p) for p in NOTEBOOKS), name


def test_cli_notebooks_refuses_a_wrong_type_for_the_real_workbook(tmp_path, capsys):
    from helpers.tools import cli

    assert cli.main(["notebooks", "-p", "PER_CLASS", "abc", "--out", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "error: -p PER_CLASS: must be None or a whole number, got 'abc'; nothing was run"


def test_ctrl_c_in_the_runner_records_the_notebook_as_interrupted_in_one_line(tmp_path):
    """Issue 17 (10): SIGINT to the runner's process group, as a terminal's Ctrl-C sends it, mid-cell."""
    import signal
    import time

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    started = tmp_path / "kernel.pid"
    _tiny_notebook(src / "00_ok.ipynb", "print(VALUE)")
    _tiny_notebook(
        src / "01_slow.ipynb",
        f"import os, time\nopen({str(started)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)",
    )
    _tiny_notebook(src / "02_after.ipynb", "print(VALUE)")
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "notebooks", "--notebooks-dir", str(src), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (started.exists() and started.read_text()):
            time.sleep(0.1)
        assert started.exists(), "the slow cell never started"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "ZMQError" not in stderr, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.strip() and "running over TCP without encryption" not in line]
    assert said == [f"interrupted: {out / notebooks.SUMMARY} records the notebook that was stopped"], stderr[-3000:]
    assert "01_slow.ipynb: interrupted after" in stdout
    summary = json.loads((out / notebooks.SUMMARY).read_text())
    assert not summary["complete"] and summary["interrupted"] == "01_slow" and summary["pending"] == ["02_after"]
    ok, slow = summary["notebooks"]
    assert ok["ok"] and not ok["interrupted"]
    assert (
        slow["interrupted"] and not slow["ok"] and slow["error"] == "interrupted (Ctrl-C) in cell 2 `import os, time`"
    )
    kernel = int(started.read_text())
    for _ in range(50):  # the kernel was killed, not left running the cell
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the interrupted notebook's kernel (pid {kernel}) is still running")


def test_clean_keeps_only_checked_outputs_and_tags(tmp_path):
    path = _tiny_notebook(tmp_path / "nb.ipynb", "# NBVAL_CHECK_OUTPUT\nprint(VALUE)")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="noise\n")]
    nb.cells[1].execution_count = 3
    nb.cells[1].metadata["papermill"] = {"duration": 1.0}
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].execution_count = 4
    nb.metadata["papermill"] = {"parameters": {}}
    nbformat.write(nb, str(path))
    assert notebooks.dirty_notebooks([path], fix=True) == [path]
    assert notebooks.dirty_notebooks([path]) == []
    cleaned = nbformat.read(str(path), as_version=4)
    assert cleaned.cells[1].outputs == [] and cleaned.cells[1].execution_count is None
    assert cleaned.cells[1].metadata == {"tags": ["parameters"]}
    assert cleaned.cells[2].outputs[0].text == "1\n"
    assert cleaned.cells[2].execution_count == 2  # the second code cell: nbval skips cells never run
    assert set(cleaned.metadata) == {"kernelspec", "language_info"}


def test_store_checked_outputs_copies_them_from_an_executed_copy(tmp_path):
    stored = _tiny_notebook(tmp_path / "stored.ipynb", "# NBVAL_CHECK_OUTPUT\nprint(VALUE)")
    executed = nbformat.read(str(stored), as_version=4)
    executed.cells[2].outputs = [nbformat.v4.new_output("stream", text="21\n")]
    executed.cells.insert(2, nbformat.v4.new_code_cell("VALUE = 21", metadata={"tags": ["injected-parameters"]}))
    nbformat.write(executed, str(tmp_path / "executed.ipynb"))
    assert notebooks.store_checked_outputs(tmp_path / "executed.ipynb", stored) == 1
    again = nbformat.read(str(stored), as_version=4)
    assert len(again.cells) == 3 and again.cells[2].outputs[0].text == "21\n"
    assert notebooks.dirty_notebooks([stored]) == []


def test_nbval_replay_compares_what_the_run_printed(tmp_path, plain_kernels):
    """The replay is faithful: a same (sanitized) output passes, a different or a missing one fails."""
    stored = tmp_path / "00_tiny.ipynb"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# tiny"),
            nbformat.v4.new_code_cell("VALUE = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(
                "# NBVAL_CHECK_OUTPUT\nprint(VALUE, '0xdeadbeef')",
                execution_count=2,
                outputs=[nbformat.v4.new_output("stream", text="7 0x1234\n")],
            ),
            nbformat.v4.new_code_cell(
                "# NBVAL_CHECK_OUTPUT\nprint(VALUE + 1)",
                execution_count=3,
                outputs=[nbformat.v4.new_output("stream", text="9\n")],
            ),
            nbformat.v4.new_code_cell(
                "# NBVAL_CHECK_OUTPUT\nprint('quiet')",
                execution_count=4,
                outputs=[nbformat.v4.new_output("stream", text="quiet\n")],
            ),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(stored))
    run = notebooks.run_notebook(stored, tmp_path / "out", {"VALUE": 7})
    assert run.ok, run.error
    executed = nbformat.read(str(run.output), as_version=4)
    assert executed.cells[-1].outputs[0].text == "quiet\n"
    executed.cells[-1].outputs = []  # as if the last cell had printed nothing
    nbformat.write(executed, str(run.output))

    result = _nbval(stored, run.output, tmp_path / "nbval", {"VALUE": 7})
    # code cells 0-2 pass (parameters, papermill's injected cell, '7 0x...' sanitized); 3 and 4 fail
    assert "2 failed, 3 passed" in result.stdout and result.returncode != 0, result.stdout[-3000:]
    assert "Cell outputs differ" in result.stdout and "'9\\n' == '8\\n'" in result.stdout.replace('"', "'")
    assert "Missing output fields" in result.stdout

    with pytest.raises(ValueError, match="not a run of"):
        notebooks.nbval_replay(stored, run.output, {"VALUE": 8})
