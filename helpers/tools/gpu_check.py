"""``python -m helpers gpu-check``: does the workbook really run on this machine's GPU, and how fast?

One run, on whatever Keras backend is chosen (``KERAS_BACKEND``):

1. **find the GPU** the backend sees (TensorFlow: ``tf.config``; JAX: ``jax.devices("gpu")``;
   PyTorch: ``torch.cuda``, see :func:`helpers.run.device.gpus`). None found: exit non-zero with
   the reason, unless ``--allow-cpu`` (the same measurements, small, on the CPU: for tests);
2. **mixed precision** on the GPU (``mixed_bfloat16`` with JAX, ``mixed_float16`` otherwise;
   float32 on the CPU unless ``--precision``);
3. **InceptionV3** (``weights=None``: nothing to download) with the lesson's head
   (:func:`helpers.model.lesson.add_head`) on synthetic uint8 photos;
4. the **forward pass** of the frozen part (images/s; the first call's extra time is the
   compile time), **the head trained on the cached features** against the **plain** recipe
   (the frozen base inside every step), and **fine-tuning the top blocks** (a training step's
   images/s).

It prints one JSON line (and returns the same dict): every number is measured in this run.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time

import keras
import numpy as np

from helpers.model import cuts
from helpers.model.lesson import add_head, split_at, unfreeze_above
from helpers.run import device, train
from helpers.run.config import (
    FINE_TUNE_LEARNING_RATE,
    GPU_CHECK_CPU_SIZES,
    GPU_CHECK_GPU_SIZES,
    HEAD_LEARNING_RATE,
    Recipe,
)


class NoGPUError(RuntimeError):
    """The backend sees no GPU (the message says what was looked at and what to do)."""


def find_gpus() -> list[str]:
    """The GPUs the Keras backend sees (:func:`helpers.run.device.gpus`)."""
    return device.gpus()


def _no_gpu_message() -> str:
    backend = keras.backend.backend()
    where = {
        "tensorflow": 'tf.config.list_physical_devices("GPU") is empty '
        "(CPU-only tensorflow-cpu, or no CUDA driver: install tensorflow[and-cuda] on Linux)",
        "jax": 'jax.devices("gpu") found none (CPU-only jax: install jax[cuda12] on Linux)',
        "torch": "torch.cuda.is_available() is False (a CPU build of torch, or no CUDA driver)",
    }
    return (
        f"no GPU found for the Keras backend {backend!r}: {where.get(backend, 'no GPU')}. "
        "Pass --allow-cpu to run the same measurements on the CPU (small)."
    )


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _versions() -> dict[str, str]:
    backend = keras.backend.backend()
    out = {"keras": keras.__version__, "python": platform.python_version()}
    out[backend] = __import__(backend).__version__
    return out


def _sizes(gpus: list[str], sizes: dict) -> dict:
    """The GPU's (or the CPU's) defaults, with the sizes given (not None) put over them."""
    out = dict(GPU_CHECK_GPU_SIZES if gpus else GPU_CHECK_CPU_SIZES)
    out.update({k: v for k, v in sizes.items() if v is not None})
    return out


def _inception(size: int) -> keras.Model:
    """InceptionV3 (``weights=None``: nothing to download), frozen, with the lesson's head."""
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))
    base.trainable = False
    return add_head(base, ["lion", "tiger", "bear"], keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess"))


def _first_then_steady(model: keras.Model, x, y, recipe: Recipe) -> tuple[float, float]:
    """Seconds of one batch's epoch (compiles the step), then of ``recipe.epochs`` epochs on all of ``x`` (steady)."""
    bs = recipe.batch_size
    first = _timed(lambda: train.fit(model, x[:bs], y[:bs], dataclasses.replace(recipe, epochs=1)))
    return first, _timed(lambda: train.fit(model, x, y, recipe, shuffle=False, recompile=False))


def _measure(model: keras.Model, x: np.ndarray, y: np.ndarray, recipe: Recipe, blocks: int) -> dict:
    """Seconds of each step of the module doc (the first call of each: the compile time)."""
    bs, n = recipe.batch_size, len(x)
    bottom, top = split_at(model, cuts.POOL)
    t: dict = {}
    # 1. the forward pass of the frozen part: the first batch compiles, then the steady rate
    t["forward_first"] = _timed(lambda: bottom.predict(x[:bs], batch_size=bs, verbose=0))
    features = []
    t["forward"] = _timed(lambda: features.append(bottom.predict(x, batch_size=bs, verbose=0)))
    # 2. the head on the cached features vs the plain recipe (frozen base in every step)
    t["top_first"], t["top_fit"] = _first_then_steady(top, features[0], y, recipe)
    t["plain_first"], t["plain_fit"] = _first_then_steady(model, x, y, recipe)
    # 3. fine-tuning the top blocks: a full training step through them
    base = cuts.base_of(model)
    t["cut"] = cuts.resolve_block(base, blocks)
    unfreeze_above(base, t["cut"])
    tune = dataclasses.replace(recipe, learning_rate=FINE_TUNE_LEARNING_RATE, epochs=1)
    t["tune_first"], t["tune"] = _first_then_steady(model, x, y, tune)
    t["loss"] = float(model.evaluate(x[:bs], y[:bs], batch_size=bs, verbose=0)[0])
    t["compile_seconds"] = {
        "forward": round(max(0.0, t["forward_first"] - t["forward"] * bs / n), 3),
        "head_train_step": round(max(0.0, t["top_first"] - t["top_fit"] * bs / (n * recipe.epochs)), 3),
        "frozen_train_step": round(max(0.0, t["plain_first"] - t["plain_fit"] * bs / (n * recipe.epochs)), 3),
        "fine_tune_train_step": round(max(0.0, t["tune_first"] - t["tune"] * bs / n), 3),
    }
    return t


def run(allow_cpu: bool = False, precision: str | None = None, blocks: int = 2, seed: int = 0, **sizes) -> dict:
    """Measure the GPU (or, with ``allow_cpu``, the CPU); return the numbers (see the module doc).

    ``sizes``: ``image_size``, ``images``, ``batch_size``, ``epochs`` (None or left out:
    :data:`helpers.run.config.GPU_CHECK_GPU_SIZES` on a GPU, ``GPU_CHECK_CPU_SIZES`` on the CPU).
    """
    gpus = find_gpus()
    if not gpus and not allow_cpu:
        raise NoGPUError(_no_gpu_message())
    sizes = _sizes(gpus, sizes)
    size, bs, epochs = sizes["image_size"], sizes["batch_size"], sizes["epochs"]
    n = max(bs, sizes["images"] // bs * bs)  # whole batches only: one shape, one compilation
    if precision is None:
        precision = ("mixed_bfloat16" if keras.backend.backend() == "jax" else "mixed_float16") if gpus else "float32"
    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8).astype("float32")
        y = (np.arange(n) % 3).astype(np.int32)
        build_start = time.perf_counter()
        model = _inception(size)
        build_seconds = time.perf_counter() - build_start
        t = _measure(model, x, y, Recipe(learning_rate=HEAD_LEARNING_RATE, epochs=epochs, batch_size=bs), blocks)
    finally:
        keras.mixed_precision.set_global_policy(before)
    cached = t["forward"] + t["top_fit"]
    return {
        "backend": keras.backend.backend(),
        "versions": _versions(),
        "device": "GPU" if gpus else "CPU",
        "gpus": gpus,
        "precision": precision,
        "jit_compile": device.jit_compile(),
        "model": "inception_v3",
        "weights": None,
        "image_size": size,
        "images": n,
        "batch_size": bs,
        "epochs": epochs,
        "build_seconds": round(build_seconds, 3),
        "forward_images_per_second": round(n / t["forward"], 2),
        "frozen_train_step_images_per_second": round(n * epochs / t["plain_fit"], 2),
        "head_on_features_images_per_second": round(n * epochs / t["top_fit"], 2),
        "fine_tune_cut": t["cut"],
        "fine_tune_blocks": blocks,
        "train_step_images_per_second": round(n / t["tune"], 2),
        "compile_seconds": t["compile_seconds"],
        "cached_seconds": round(cached, 3),
        "plain_seconds": round(t["plain_fit"], 3),
        "plain_over_cached": round(t["plain_fit"] / cached, 3),
        "fine_tune_loss_finite": bool(np.isfinite(t["loss"])),
    }


def main(allow_cpu: bool = False, **options) -> int:
    """The command: one JSON line on stdout; no GPU (without ``allow_cpu``): a message, exit code 3."""
    try:
        result = run(allow_cpu=allow_cpu, **options)
    except NoGPUError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result), flush=True)
    return 0
