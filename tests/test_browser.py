"""A real browser: JupyterLab in headless Chromium runs notebook 04 and the freeze slider works.

The test starts JupyterLab on 127.0.0.1 with a random token (never without one), opens a
quick-mode copy of ``notebooks/04_fine_tune.ipynb`` (papermill ``prepare_only``) that ends with the
cells the slider drives (:data:`LAST_CELL`), runs all its cells from the Run menu, moves the freeze
slider with the keyboard and checks that the trainable-weight count on the page changes. The screenshot is saved to
``$WORKBOOK_ARTIFACTS/browser/`` (default ``artifacts/browser/``, git-ignored).

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$WORKBOOK_CHROMIUM``) and the
``playwright`` Python package driving it (no ``playwright install``: no browser download),
plus the shared photos and weights; it skips, saying which, when any is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers.settings import PROJECT_ROOT
from helpers.tools import notebooks

NOTEBOOK = PROJECT_ROOT / "notebooks" / "04_fine_tune.ipynb"
CHROMIUM = Path(os.environ.get("WORKBOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
COUNT = re.compile(r"trainable weights: ([\d,]+) of ([\d,]+)")
RUN_TIMEOUT_S = 240

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("WORKBOOK_ARTIFACTS", PROJECT_ROOT / "artifacts"))
    out = root / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set WORKBOOK_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "the playwright Python package is not installed: pip install playwright "
            "(no `playwright install` needed: the test drives the system Chromium)"
        )
    with sync_playwright() as api:
        yield api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return 0


def write_lab_settings(settings_dir: Path) -> None:
    """Render every notebook cell (no windowing) and fetch no news: a quiet, complete page."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "windowingMode": "none",
            "autoStartDefaultKernel": True,
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, value in files.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


#: The last cell the browser runs: the lines the slider drives, by hand, on the slider's choice. What follows
#: (phase 2, the comparisons over seeds) is not about the widget; the quick workbook runs all of it.
LAST_CELL = "unfreeze_above(base, CUT)"


def keep_up_to_the_slider(path: Path) -> None:
    """Cut the prepared copy after :data:`LAST_CELL`, so the browser waits on the slider's cells only."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    last = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and LAST_CELL in c.source), None)
    assert last is not None, f"{NOTEBOOK.name} has no cell with {LAST_CELL!r}: update LAST_CELL"
    nb.cells = nb.cells[: last + 1]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory, shared_photos, shared_weights_dir):
    """A JupyterLab server on 127.0.0.1 with a token, serving a quick-mode copy of notebook 04."""
    import papermill

    if not NOTEBOOK.is_file():
        pytest.skip(f"{NOTEBOOK} is not there yet")
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    copy = work / NOTEBOOK.name
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(copy),
        prepare_only=True,
        parameters=notebooks.parameters_for(NOTEBOOK, quick=True),
        kernel_name=notebooks.KERNEL_NAME,
        progress_bar=False,
    )
    keep_up_to_the_slider(copy)
    write_lab_settings(root / "lab-settings")
    token, port = secrets.token_hex(24), free_port()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        WORKBOOK_DATA=str(shared_photos),
        WORKBOOK_WEIGHTS_DIR=str(shared_weights_dir),
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        JUPYTER_DATA_DIR=str(root / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    log = open(root / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={work}",
            "--ServerApp.port_retries=0",
            "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],  # CI containers run as root
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=work,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while http_status(f"{base}/api/status?token={token}") != 200:
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"JupyterLab did not start; log:\n{(root / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "root": root}
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_jupyterlab_refuses_requests_without_the_token(jupyterlab):
    assert http_status(f"{jupyterlab['base']}/api/status") in (401, 403)
    assert http_status(f"{jupyterlab['base']}/api/status?token=wrong") in (401, 403)


def trainable_count(page) -> tuple[int, int]:
    text = page.locator(".workbook-trainable-count").first.inner_text()
    match = COUNT.search(text)
    assert match, f"no trainable count in {text!r}"
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def wait_until_all_cells_ran(page, timeout_s: float) -> None:
    """Every code cell has an execution number, none is running (``[*]``) and none failed."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')"
        ).count():
            break
        if prompts and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts):
            return
        time.sleep(1)
    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    raise AssertionError(
        f"notebook did not finish in {timeout_s}s; prompts "
        f"{page.locator('.jp-CodeCell .jp-InputPrompt').all_inner_texts()}; "
        f"stderr {[e[-500:] for e in errors]}"
    )


def test_freeze_slider_changes_the_trainable_count_in_a_real_browser(jupyterlab, playwright_api):
    profile = jupyterlab["root"] / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    context = playwright_api.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
    )
    page = context.pages[0] if context.pages else context.new_page()
    shot = artifacts_dir() / "04_fine_tune_freeze_slider.png"
    try:
        page.goto(f"{jupyterlab['base']}/lab/tree/{NOTEBOOK.name}?token={jupyterlab['token']}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        select_kernel = page.locator(".jp-Dialog .jp-mod-accept", has_text="Select")
        try:  # older settings may still ask which kernel: the notebook's own (Python 3)
            select_kernel.click(timeout=5_000)
        except Exception:
            pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)

        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        slider = page.locator(".workbook-freeze-slider")
        slider.wait_for(timeout=RUN_TIMEOUT_S * 1000)
        wait_until_all_cells_ran(page, RUN_TIMEOUT_S)

        before, total = trainable_count(page)
        handle = page.locator(".workbook-freeze-slider .noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        counts = [before]
        for _ in range(3):  # one block further down at a time: more of the base learns each step
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                "(previous) => { const el = document.querySelector('.workbook-trainable-count');"
                " const m = el && el.innerText.match(/trainable weights: ([\\d,]+)/);"
                " return m && Number(m[1].replace(/,/g, '')) !== previous; }",
                arg=counts[-1],
                timeout=30_000,
            )
            counts.append(trainable_count(page)[0])
        slider.scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
        after, total_after = trainable_count(page)
        readout = page.locator(".workbook-freeze-slider .widget-readout").first.inner_text()
        assert after == counts[-1], "the count must be stable once the slider stops"
        assert total_after == total
        assert counts == sorted(set(counts)), f"moving the slider down should unfreeze more each step: {counts}"
        print(
            f"trainable weights {' -> '.join(f'{c:,}' for c in counts)} of {total:,} "
            f"(slider at {readout}); screenshot {shot}"
        )
    except Exception:
        page.screenshot(path=str(shot.with_name("04_fine_tune_failure.png")), full_page=True)
        raise
    finally:
        context.close()
