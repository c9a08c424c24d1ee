"""What each notebook is given to run: its ``parameters`` cell read, ``-p NAME VALUE`` checked, quick mode.

The notebook runner (:mod:`helpers.tools.notebooks`) injects, with papermill, only the parameters a
notebook declares in its ``parameters`` cell: :data:`QUICK_PARAMETERS` with ``--quick``, then
``--backbone``, then ``-p``. :func:`check_parameters` refuses an unknown name or a value of the wrong type
in one line, before any notebook runs.
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Iterable
from pathlib import Path

import nbformat
from papermill.translators import PythonTranslator

from helpers.model.specs import get_spec

#: Quick-mode parameter overrides. ``"*"`` applies to every notebook that declares the
#: parameter in its ``parameters`` cell; a notebook's own entry (keyed by file stem) wins.
#: Every comparison still runs over two seeds (draws) instead of three, so each code path, the
#: per-seed tables and the verdicts included, runs; most of a quick run is per-fit overhead.
QUICK_PARAMETERS: dict[str, dict[str, object]] = {
    "*": {
        "BACKBONE": "mobilenet_v2",
        "WEIGHTS": "imagenet",  # found in $WORKBOOK_WEIGHTS_DIR (the 1.0_224 no-top file)
        "IMAGE_SIZE": 96,
        "PER_CLASS": 5,
        "EPOCHS": 3,
    },
    "01_pretrained_model": {"CLASSIFIER": "mobilenet_0.25", "PER_CLASS": 2},  # MobileNet, alpha 0.25
    "02_pop_and_add_head": {"BACKBONE": "mobilenet_v2"},
    "03_train_the_head": {"BACKBONE": "mobilenet_v2", "EPOCHS": 20},
    "04_fine_tune": {"BACKBONE": "mobilenet_v2", "HEAD_EPOCHS": 20, "FINE_TUNE_EPOCHS": 2, "SEEDS": [0, 1]},
    "05_small_data_short_time": {
        "BACKBONE": "mobilenet_v2",
        "CLASSIFIER": "mobilenet_0.25",  # the ImageNet prior's classifier: its full-top file is in ../shared
        "PER_CLASS": 5,
        "EPOCHS": 10,
        "PER_CLASS_LIST": [1, 10],
        "SEEDS": [0, 1],
        "SCRATCH_IMAGE_SIZE": 64,
        "SCRATCH_EPOCHS": 5,
        "SCRATCH_SEEDS": 1,
        "SCRATCH_SECONDS": 10,
        "MIRROR_PER_CLASS": [1, 2],
        "MIRROR_SEEDS": [0, 1],
    },
    "05a_your_photos_and_augmentation": {
        "BACKBONE": "MobileNetV2",
        "EPOCHS": 10,
        "PER_CLASS_LIST": [1, 2],
        "SEEDS": [0, 1],
        "VIEWS": 2,
        "SMALL_IMAGE_SIZE": 96,  # the quick run's size already: its features are stored
        "SMALL_PER_CLASS_LIST": [2],
        "SMALL_VIEWS": 2,  # = VIEWS: the views of the draws above, read back
    },
    "06_evaluate_and_explain": {"CLASSIFIER": "mobilenet_0.25", "EPOCHS": 20, "PER_CLASS": 1},
    "07_compare_architectures": {
        "BACKBONES": ["mobilenet_v2", "mobilenet_0.25", "resnet50"],
        "ALLOW_DOWNLOAD": False,
        "EPOCHS": 20,
        "SEEDS": [0, 1],
    },
    "08_export_and_predict": {"EPOCHS": 20},
}


def declared_parameters(path: str | os.PathLike) -> dict[str, object]:
    """The names and default values (as source text) of a notebook's ``parameters`` cell."""
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return {p.name: p.default for p in PythonTranslator.inspect(cells[0])} if cells else {}


def parameters_for(
    path: str | os.PathLike, quick: bool = False, backbone: str | None = None, parameters: dict | None = None
) -> dict[str, object]:
    """What to inject into one notebook: quick overrides < ``backbone`` < explicit ``parameters``.

    Only parameters the notebook declares are injected. ``--backbone`` sets ``BACKBONE`` and
    notebook 01's ``CLASSIFIER``, so one backbone runs through the whole workbook; ``BACKBONE`` is
    written as the workbook names it (``MobileNetV2`` → ``mobilenet_v2``, the one spelling the
    notebooks print), and the lesson's load cells resolve it (``helpers.model.backbones.application``).
    """
    path = Path(path)
    declared = declared_parameters(path)
    chosen: dict[str, object] = {}
    if quick:
        chosen.update(QUICK_PARAMETERS.get("*", {}))
        chosen.update(QUICK_PARAMETERS.get(path.stem, {}))
    if backbone is not None:
        chosen["BACKBONE"] = get_spec(backbone).name
        chosen["CLASSIFIER"] = backbone
    chosen.update(parameters or {})
    return {k: v for k, v in chosen.items() if k in declared}


def parse_value(text: str) -> object:
    """A ``-p NAME VALUE`` value: a Python literal (``3``, ``None``, ``'a'``, ``[1, 2]``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = type(None)

#: Parameters that take more types than their default values show (each parameters cell's comment says so).
#: Any other name takes the types of its defaults across the notebooks; one whose defaults are all None, anything.
PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "FINE_TUNE_FROM": (int, str, _NONE),  # 04: how many top blocks, a block name ("mixed8"), or None
    "IMAGE_SIZE": (int, _NONE),  # None: the backbone's own size
    "PER_CLASS": (int, _NONE),  # None: all photos
    "WEIGHTS": (str, _NONE),  # "imagenet", a file, or None (random)
    "DATA_DIR": (str, _NONE),
    "CACHE_DIR": (str, _NONE),
    "MODEL_FILE": (str, _NONE),
}


def _type_name(kinds: set[type]) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "text", list: "a list",
             dict: "a dict", _NONE: "None"}  # fmt: skip
    return " or ".join(sorted(names.get(k, k.__name__) for k in kinds))


def _convert(value: object, kinds: set[type], items: list[object] = ()) -> object:
    """``value`` (text from the command line, or a Python value) as one of ``kinds``; ValueError if it is none.

    ``items``: the default lists' elements, whose types a list's elements must have.
    """
    parsed = parse_value(value) if isinstance(value, str) else value
    typed = kinds - {_NONE}
    if not typed:  # declared as None everywhere: anything sensible (a literal, or else text)
        return parsed
    if parsed is None and _NONE in kinds:
        return None
    if bool in typed:
        if isinstance(parsed, bool):
            return parsed
        if not isinstance(parsed, float) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
    if int in typed and isinstance(parsed, int) and not isinstance(parsed, bool):
        return parsed
    if float in typed and isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
        return float(parsed)
    if list in typed and isinstance(parsed, (list, tuple)):
        return _convert_list(value, parsed, items)
    if dict in typed and isinstance(parsed, dict):
        return parsed
    if str in typed and isinstance(value, str):
        return parsed if isinstance(parsed, str) else value  # text as typed: "3" stays "3" for a name
    raise ValueError(f"must be {_type_name(kinds)}, got {value!r}")


def _convert_list(value: object, parsed: list | tuple, items: list[object]) -> list:
    """A list value, each element of one of the types of ``items`` (the default lists' elements), if any."""
    if not items:
        return list(parsed)
    kinds_of_items = {type(item) for item in items}
    try:
        return [_convert(item, kinds_of_items) for item in parsed]
    except ValueError:
        raise ValueError(f"must be a list of {_type_name(kinds_of_items)}, got {value!r}") from None


def _default_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):  # an expression: its type is not known, so anything goes
        return None


def check_parameters(
    parameters: dict, paths: Iterable[str | os.PathLike], all_paths: Iterable[str | os.PathLike] | None = None
) -> dict[str, object]:
    """``parameters`` checked against the ``parameters`` cells of the notebooks ``paths``, and converted.

    A name no notebook in ``paths`` declares is refused (with the closest declared name); a
    value is converted to the type of the name's default values (in ``all_paths``, default:
    ``paths``), or to :data:`PARAMETER_TYPES` — ``"5"`` to 5 for ``PER_CLASS = 5``, ``"yes"`` to
    True for a bool; a name whose defaults are all None accepts any literal or text.
    Raises ValueError with one line naming every refused parameter and what it must be.
    """
    paths = [Path(p) for p in paths]
    declared = {p.stem: declared_parameters(p) for p in paths}
    defaults: dict[str, list[object]] = {}
    for p in [Path(q) for q in all_paths] if all_paths is not None else paths:
        for name, text in (declared[p.stem] if p.stem in declared else declared_parameters(p)).items():
            defaults.setdefault(name, []).append(_default_value(text))
    known = sorted({name for names in declared.values() for name in names})
    where = ", ".join(declared) if len(declared) <= 3 else f"any of the {len(declared)} notebooks selected"
    problems, out = [], {}
    for name, value in parameters.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"they declare {', '.join(known)}"
            problems.append(f"-p {name}: not a parameter of {where} ({hint})")
            continue
        values = defaults.get(name, [None])
        kinds = set(PARAMETER_TYPES.get(name, {type(v) for v in values}))
        items = [item for v in values if isinstance(v, list) for item in v]
        try:
            out[name] = _convert(value, kinds, items)
        except ValueError as exc:
            problems.append(f"-p {name}: {exc}")
    if problems:
        raise ValueError("; ".join(problems) + "; nothing was run")
    return out
