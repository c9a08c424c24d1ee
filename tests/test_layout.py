"""The package's shape (issue 18): groups in one order, no cycle, public Keras only, no import side effects.

The groups, bottom to top, are :data:`helpers.GROUPS` (``settings`` and ``files`` sit below them all).
A module may import from its own group and the groups below it, never from one above: the
activation store does not draw figures, a training run does not know the notebook runner.
"""

import ast
import subprocess
import sys
from pathlib import Path

import helpers

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "helpers"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``helpers`` modules ``path`` imports (anywhere in the file), resolved to module names."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("helpers"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("helpers"):
                continue
            for alias in node.names:  # `from helpers.model import cuts` names a module; `from x import f` a name
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _exists(candidate) else module)
    return {m for m in found if m != here}


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _rank(module: str) -> int:
    """-1 for the package's base (``helpers``, ``settings``, ``files``); else the group's place in GROUPS."""
    parts = module.split(".")
    return helpers.GROUPS.index(parts[1]) if len(parts) > 1 and parts[1] in helpers.GROUPS else -1


def test_every_module_belongs_to_a_group_or_the_base():
    base = {"helpers", "helpers.__main__", "helpers.settings", "helpers.files"}
    loose = [m for m in _graph() if _rank(m) < 0 and m not in base]
    assert not loose, f"modules outside the groups {helpers.GROUPS}: {loose}"


def test_no_module_imports_from_a_group_above_its_own():
    upward = [
        f"{m} ({m.split('.')[1] if _rank(m) >= 0 else 'base'}) imports {d}"
        for m, deps in _graph().items()
        if m not in {"helpers", "helpers.__main__"}
        for d in deps
        if _rank(d) > _rank(m)
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if d not in graph or d.endswith("__init__"):
                continue
            if state.get(d) == 1:
                return [*path, m, d]
            if d not in state and (cycle := visit(d, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for module in graph:
        if module not in state and module not in {"helpers"}:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)


def test_only_public_keras():
    private = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "keras.src" in p.read_text()]
    assert not private, f"keras.src (private Keras) is imported in {private}"


def test_importing_helpers_changes_nothing_in_keras_or_the_process():
    code = (
        "import os, sys, keras\n"
        "fit, env, err = keras.Model.fit, dict(os.environ), os.fstat(2)\n"
        "import helpers, helpers.model.backbones, helpers.store.cache, helpers.run.train\n"
        "assert keras.Model.fit is fit, 'keras.Model.fit was replaced'\n"
        "assert dict(os.environ) == env, sorted(set(os.environ.items()) ^ set(env.items()))\n"
        "assert os.fstat(2) == err, 'standard error was redirected'\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "WORKBOOK_PASS_LOG": "/dev/null"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
