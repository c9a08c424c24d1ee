"""Which device runs what: GPUs, mixed precision, XLA and ``tf.distribute`` (notebook 00).

The workbook runs the same code on a laptop CPU, one GPU, several GPUs or several machines:

- **CPU** (default here): float32, one device, Keras' default strategy.
- **One GPU**: mixed precision (``mixed_float16``: float16 maths, float32 weights; the
  head's softmax stays float32, see :func:`helpers.model.lesson.add_head`) and XLA
  (``jit_compile``) for the training step.
- **Several GPUs on one machine**: ``tf.distribute.MirroredStrategy`` — one model copy
  per GPU, each batch split across them, gradients summed.
- **Several machines**: ``tf.distribute.MultiWorkerMirroredStrategy``. Start the same
  command on every machine with ``TF_CONFIG`` describing the cluster, e.g. on worker 0::

      TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                  "task": {"type": "worker", "index": 0}}' python -m helpers train ...

  (index 1 on the second machine). :func:`choose_strategy` picks it when ``TF_CONFIG``
  names more than one worker. Only worker 0 should write the final model.

Everything ``tf.distribute``/``tf.config`` lives in this module; the rest of the
helpers ask it for a strategy scope and for the XLA setting.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import keras


def _tf():
    import tensorflow as tf  # noqa: PLC0415 - an optional backend, imported only when Keras runs on it

    return tf


def _jax():
    import jax  # noqa: PLC0415 - an optional backend, imported only when Keras runs on it

    return jax


def _torch():
    import torch  # noqa: PLC0415 - an optional backend, imported only when Keras runs on it

    return torch


def backend() -> str:
    """Keras' backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return keras.backend.backend()


def has_tensorflow() -> bool:
    """Whether TensorFlow is installed (``tf.distribute`` and ``tf.config`` exist only then)."""
    return importlib.util.find_spec("tensorflow") is not None


def _uses_tensorflow() -> bool:
    """``tf.config``/``tf.distribute`` apply: the backend is TensorFlow (so it is installed)."""
    return backend() == "tensorflow"


def _jax_devices(kind: str) -> list:
    try:
        return list(_jax().devices(kind.lower()))
    except RuntimeError:  # "Unknown backend gpu": no GPU plugin or no GPU
        return []


def gpus() -> list[str]:
    """Names of the GPUs the Keras backend sees (empty on a CPU-only machine).

    TensorFlow: ``tf.config.list_physical_devices("GPU")``; JAX: ``jax.devices("gpu")``;
    PyTorch: ``torch.cuda`` (and Apple's ``mps``).
    """
    name = backend()
    if name == "tensorflow":
        return [d.name for d in _tf().config.list_physical_devices("GPU")]
    if name == "jax":
        return [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in _jax_devices("gpu")]
    if name == "torch":
        torch = _torch()
        if torch.cuda.is_available():
            return [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        return ["mps:0"] if mps is not None and mps.is_available() else []
    return []


def logical_devices(kind: str = "GPU") -> list[str]:
    """Names of the logical devices of ``kind`` ("GPU" or "CPU") the backend will use."""
    if _uses_tensorflow():
        return [d.name for d in _tf().config.list_logical_devices(kind)]
    if backend() == "jax":
        return [str(d) for d in _jax_devices(kind)]
    return gpus() if kind == "GPU" else ["cpu:0"]


def split_cpu(n: int = 2) -> list[str]:
    """Split the CPU into ``n`` logical devices (to test multi-device code without GPUs).

    Must run before TensorFlow initialises its devices (first op / first model), so tests
    call it at the top of a fresh process. TensorFlow backend only.
    """
    if not _uses_tensorflow():
        raise RuntimeError(f"split_cpu needs the TensorFlow backend (tf.config); this is {backend()!r}")
    tf = _tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    return logical_devices("CPU")


def workers_in_tf_config() -> int:
    """How many workers ``$TF_CONFIG`` describes (0 when it is unset or has no cluster)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON ({exc}); see helpers/run/device.py for an example") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def choose_strategy(kind: str = "auto"):
    """A ``tf.distribute`` strategy: ``"auto"``, ``"default"``, ``"mirrored"`` or ``"multi_worker"``.

    ``"auto"``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several workers,
    MirroredStrategy when more than one GPU is visible, else the default (one device).
    ``"mirrored"`` with no GPUs mirrors over the logical CPUs (see :func:`split_cpu`).
    Nothing is remembered: pass the strategy on (``helpers.run.train.Recipe(strategy=...)``).

    With another Keras backend (JAX, PyTorch) there is no ``tf.distribute``: ``"auto"`` and
    ``"default"`` give None (one device; :func:`strategy_scope` does nothing), the others
    raise with the reason. (Keras' own ``keras.distribution`` is JAX's way to several devices.)
    """
    if kind not in ("auto", "default", "mirrored", "multi_worker"):
        raise ValueError(f"unknown strategy {kind!r}; choose auto, default, mirrored or multi_worker")
    if not _uses_tensorflow():
        if kind in ("auto", "default"):
            return None
        raise RuntimeError(
            f"strategy {kind!r} is tf.distribute, which needs the TensorFlow backend; "
            f"this is {backend()!r} (use keras.distribution with JAX)"
        )
    tf = _tf()
    if kind == "auto":
        if workers_in_tf_config() > 1:
            kind = "multi_worker"
        elif len(gpus()) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = logical_devices("GPU") or logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {kind!r}; choose auto, default, mirrored or multi_worker")


@contextlib.contextmanager
def strategy_scope(strategy=None) -> Iterator[object]:
    """``with strategy_scope(strategy):`` build and compile models so they run on every replica.

    With the TensorFlow backend and a strategy this enters it; with ``None`` (one device)
    or another Keras backend it does nothing.
    """
    if strategy is None or keras.backend.backend() != "tensorflow":
        yield strategy
        return
    with strategy.scope():
        yield strategy


def replicas(strategy=None) -> int:
    """How many model copies ``strategy`` trains in sync (1 without a multi-device strategy)."""
    return int(getattr(strategy, "num_replicas_in_sync", 1))


def use_mixed_precision(policy: str | None = "auto") -> str:
    """Set Keras' global dtype policy and return its name.

    ``"auto"``: ``mixed_float16`` on a GPU (``mixed_bfloat16`` with JAX), ``float32`` on a CPU (CPUs gain little, and
    float16 maths is slow there). ``"mixed_float16"``/``"mixed_bfloat16"``/``"float32"``
    set that policy explicitly (``None`` leaves it unchanged). Layers built afterwards
    compute in the low precision and keep float32 weights; the head's softmax is float32.
    """
    if policy == "auto":
        policy = ("mixed_bfloat16" if backend() == "jax" else "mixed_float16") if gpus() else "float32"
    if policy is not None:
        keras.mixed_precision.set_global_policy(policy)
    return keras.mixed_precision.global_policy().name


def jit_compile() -> bool:
    """Whether Keras' default ``jit_compile="auto"`` uses XLA here: on a GPU, not on a CPU.

    On CPU, XLA compiles each new batch shape for a few seconds and rarely pays back on
    short runs (measured here); on a GPU it fuses the training step's kernels. With JAX,
    Keras always compiles the step with XLA (``jax.jit``); with PyTorch, ``"auto"`` means no.
    """
    if backend() == "jax":
        return True
    if backend() == "torch":
        return False
    return bool(gpus())


@dataclass
class Setup:
    """How this machine will run the workbook."""

    device: str
    gpus: list[str]
    policy: str
    jit_compile: bool
    strategy: object
    replicas: int


def configure(mixed_precision: str | None = "auto", strategy: str = "auto") -> Setup:
    """Choose precision and strategy for this machine in one call (notebook 00 shows it)."""
    policy = use_mixed_precision(mixed_precision)
    chosen = choose_strategy(strategy)
    found = gpus()
    return Setup("GPU" if found else "CPU", found, policy, jit_compile(), chosen, replicas(chosen))


def _backend_version() -> str:
    name = backend()
    if name == "tensorflow":
        return f"tensorflow {_tf().__version__}"
    module = __import__(name)
    return f"{name} {module.__version__}" + ("" if has_tensorflow() else " (TensorFlow not installed)")


def _all_devices() -> list[str]:
    if _uses_tensorflow():
        return [d.name for d in _tf().config.list_logical_devices()]
    if backend() == "jax":
        return [str(d) for d in _jax().devices()]
    return ["cpu:0"] + gpus()


def describe(strategy=None) -> str:
    """A plain report: versions, devices, precision policy, XLA, distribution strategy.

    Notebook 00 prints this so a learner knows what runs where. ``strategy``: the one in use
    (default: what :func:`choose_strategy` picks for this machine).
    """
    found = gpus()
    strategy = strategy or choose_strategy("auto")
    lines = [
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
        f"{_backend_version()}, keras {keras.__version__} (backend: {keras.backend.backend()})",
        f"devices: {', '.join(_all_devices())}",
        f"GPUs: {', '.join(found) if found else 'none - everything runs on the CPU'}",
        f"precision policy: {keras.mixed_precision.global_policy().name}"
        + (
            " (float16 maths, float32 weights and softmax)"
            if "mixed" in keras.mixed_precision.global_policy().name
            else ""
        ),
        f"XLA (jit_compile) for training: {jit_compile()}",
        f"distribution: {type(strategy).__name__ if strategy is not None else 'one device'} with "
        f"{getattr(strategy, 'num_replicas_in_sync', 1)} replica(s)",
    ]
    if workers_in_tf_config():
        lines.append(f"TF_CONFIG: {workers_in_tf_config()} workers")
    return "\n".join(lines)


def gpu_advice(system: str | None = None, machine: str | None = None, nvidia: bool | None = None) -> str:
    """What to install for a GPU on this kind of machine, for each Keras backend (notebook 00, README).

    ``system``/``machine`` default to this computer (``platform``); ``nvidia`` to whether an
    ``nvidia-smi`` is on the PATH. Says what this workbook has and has not tried.
    """
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    nvidia = shutil.which("nvidia-smi") is not None if nvidia is None else nvidia
    found = gpus()
    lines = [f"this machine: {system} {machine}, backend {backend()}, GPU: {', '.join(found) or 'none found'}"]
    if system == "Linux":
        lines += [
            "Linux + NVIDIA: TensorFlow: pip install 'tensorflow[and-cuda]' (instead of tensorflow-cpu);",
            "  or JAX: requirements-jax.txt with jax[cuda12] instead of jax[cpu], then KERAS_BACKEND=jax;",
            "  or PyTorch: a CUDA build of torch from pytorch.org, then KERAS_BACKEND=torch.",
        ]
        if not nvidia:
            lines.append("  (no nvidia-smi here: install the NVIDIA driver first; without a GPU the CPU is used)")
    elif system == "Windows":
        lines += [
            "Windows + NVIDIA: TensorFlow has no GPU support on native Windows after 2.10.",
            "  Use the PyTorch backend (a CUDA build of torch from pytorch.org, requirements-torch.txt for",
            "  the rest, KERAS_BACKEND=torch), or run the Linux instructions inside WSL2.",
        ]
    elif system == "Darwin" and machine in ("arm64", "aarch64"):
        lines += [
            "Apple silicon: everything runs on the CPU out of the box. GPU routes exist — tensorflow-metal,",
            "  PyTorch's mps device (KERAS_BACKEND=torch), the experimental jax-metal — but none was tried",
            "  for this workbook: treat them as unverified.",
        ]
    else:
        lines.append("no GPU route known to this workbook for this system: the CPU is used")
    lines.append("check any of them with: python -m helpers gpu-check")
    return "\n".join(lines)
