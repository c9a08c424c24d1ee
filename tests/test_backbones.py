"""Backbones by name: the Keras class, preprocessing that matches Keras, cut points, weights resolution."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers.model import backbones, cuts

SMALL = {"inception_v3": 75, "xception": 71}
ROOT = Path(__file__).resolve().parent.parent


def small_size(name: str) -> int:
    return SMALL.get(name, 64)


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_every_backbone_builds_with_cut_points(name):
    base = backbones.build_base(name, weights=None, image_size=small_size(name))
    points = cuts.cut_points(base)
    assert len(points) >= 4, points
    assert points[-1] == base.layers[-1].name  # the whole base is the last cut
    spec = backbones.spec_of_model(base)  # the table's entry, found for the built base
    assert spec.model_name == backbones.get_spec(name).model_name and points[-1] == spec.grad_cam_layer
    # cutting at a middle block and stacking the halves gives the same function (called directly on two images:
    # predict would first trace three graphs)
    middle = base.get_layer(points[len(points) // 2])
    bottom = keras.Model(base.input, middle.output)
    top = keras.Model(middle.output, base.output)
    x = np.random.default_rng(0).uniform(-1, 1, (2, small_size(name), small_size(name), 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(top(bottom(x))), keras.ops.convert_to_numpy(base(x)), rtol=1e-4, atol=1e-4
    )


def test_keras_class_names_and_ours_name_the_same_backbone():
    assert backbones.get_spec("InceptionV3") is backbones.get_spec("inception_v3")
    assert backbones.get_spec("MobileNetV2").kwargs == {"alpha": 1.0}
    assert backbones.default_size("InceptionV3") == 299
    assert backbones.get_spec("mobilenet_v2_0.35").keras_name == "MobileNetV2"


def test_inception_v3_cut_points_are_the_mixed_blocks():
    base = backbones.build_base("inception_v3", weights=None, image_size=75)
    assert cuts.cut_points(base) == [f"mixed{i}" for i in range(11)]


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_preprocessing_inside_the_model_matches_keras(name):
    """The lesson's preprocessing_for, for every backbone the workbook lists, against its own preprocess_input."""
    from helpers.model.lesson import preprocessing_for

    spec = backbones.get_spec(name)
    module = getattr(keras.applications, spec.module)
    pre = backbones.preprocess_layer(name)
    assert type(pre) is type(preprocessing_for(spec.keras_name))  # the package's layer is the lesson's
    assert type(pre).__module__.startswith("keras.") and not pre.trainable_weights  # standard, never trained
    x = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    difference = np.abs(keras.ops.convert_to_numpy(pre(x)) - np.asarray(module.preprocess_input(x.copy())))
    assert difference.max() <= 1e-4, (name, difference.max())
    backbones.check_preprocessing(name, pre)  # the notebooks' check agrees
    if spec.module != "efficientnet":  # EfficientNet's preprocess_input passes pixels through
        with pytest.raises(ValueError, match="differs"):
            backbones.check_preprocessing(name, keras.layers.Rescaling(1 / 255.0))


def test_models_with_each_preprocessing_reload_in_safe_mode_without_helpers(tmp_path):
    """A .keras file with the preprocessing, a tiny base and a head loads with safe_mode=True in plain Keras."""
    x = np.random.default_rng(2).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    expected = {}
    for name in sorted(backbones.BACKBONES):
        inputs = keras.Input((16, 16, 3))
        features = keras.layers.GlobalAveragePooling2D()(
            keras.layers.Conv2D(4, 3)(backbones.preprocess_layer(name)(inputs))
        )
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(features))
        model.save(tmp_path / f"{name}.keras")
        expected[name] = model.predict(x, verbose=0)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        x = np.load({str(tmp_path / "x.npy")!r})
        for name in {sorted(backbones.BACKBONES)!r}:
            model = keras.models.load_model({str(tmp_path)!r} + "/" + name + ".keras", safe_mode=True)
            np.save({str(tmp_path)!r} + "/" + name + ".npy", model.predict(x, verbose=0))
            print(name, model.layers[1].trainable_weights == [])
        assert "helpers" not in sys.modules
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name, predicted in expected.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), predicted, rtol=1e-5, atol=1e-6)
        assert f"{name} True" in result.stdout  # the preprocessing is still not trainable


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_every_name_the_readme_accepts_builds_its_backbone(name):
    """application(): the workbook's names and Keras' class names give the Keras class, width included."""
    spec = backbones.get_spec(name)
    size = small_size(name)
    model = backbones.application(name)(include_top=False, weights=None, input_shape=(size, size, 3))
    reference = backbones.keras_class(spec)(include_top=False, weights=None, input_shape=(size, size, 3), **spec.kwargs)
    assert model.count_params() == reference.count_params()
    assert backbones.application(spec.keras_name) is backbones.keras_class(spec) or spec.kwargs.get("alpha", 1.0) != 1.0
    if spec.kwargs.get("alpha", 1.0) != 1.0:  # a width variant differs from the class's default width
        default = backbones.keras_class(spec)(include_top=False, weights=None, input_shape=(size, size, 3))
        assert model.count_params() < default.count_params()


def test_the_whole_classifier_takes_raw_pixels():
    model = backbones.build_backbone("mobilenet_0.25", weights=None)
    assert model.get_layer("preprocess") is not None and model.output.shape[-1] == 1000
    with pytest.raises(ValueError, match="image_size=224"):
        backbones.build_backbone("mobilenet_0.25", weights=None, image_size=128)


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError, match="inception_v3"):
        backbones.get_spec("vgg99")


def test_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*imagenet"):
        backbones.build_base("mobilenet_v2", weights=tmp_path / "nope.h5", image_size=64)


def test_imagenet_weights_are_found_in_the_weights_dir_first(tmp_path, monkeypatch):
    spec = backbones.get_spec("mobilenet_v2")
    (tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").write_bytes(b"x")
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(tmp_path))
    # at 160 px Keras would want the _160_ file; the 224 file loads at any size
    assert backbones.resolve_weights(spec, "imagenet", image_size=160).endswith("_1.0_224_no_top.h5")
    assert backbones.resolve_weights(spec, "none") is None
    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(tmp_path / "empty"))
    assert backbones.resolve_weights(backbones.get_spec("inception_v3"), "imagenet") in (
        "imagenet",
        str(Path(os.path.expanduser("~/.keras/models")) / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    )


def _run_keras_download(tmp_path: Path, base_url: str, weights_dir: str = "") -> subprocess.CompletedProcess:
    """Build MobileNetV2 with weights='imagenet' in a fresh process whose Keras cache is empty.

    Keras downloads from ``BASE_WEIGHT_PATH``; pointing it at ``base_url`` (loopback) exercises
    the real download code without the internet.
    """
    script = textwrap.dedent(f"""
        import keras.src.applications.mobilenet_v2 as mv2
        mv2.BASE_WEIGHT_PATH = {base_url!r}
        from helpers.model import backbones
        from helpers.model import cuts
        try:
            m = backbones.build_base("mobilenet_v2", weights="imagenet", image_size=224)
        except backbones.WeightsUnavailableError as e:
            print("UNAVAILABLE"); print(e)
        else:
            import numpy as np
            print("LOADED", float(np.abs(m.get_layer("Conv1").get_weights()[0]).sum()))
    """)
    env = dict(
        os.environ,
        KERAS_HOME=str(tmp_path / "keras_home"),
        WORKBOOK_WEIGHTS_DIR=weights_dir,
        PYTHONPATH=str(ROOT),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)


def test_offline_download_failure_is_one_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _run_keras_download(tmp_path, f"http://127.0.0.1:{port}/")
    assert "UNAVAILABLE" in result.stdout, result.stderr[-2000:]
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in result.stdout
    assert str(tmp_path / "keras_home" / "models") in result.stdout
    assert "weights='/path/to/" in result.stdout
    assert "Traceback" not in result.stderr


def test_imagenet_weights_download_over_http(tmp_path, shared_weights_dir):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_weights_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = _run_keras_download(tmp_path, f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
    assert "LOADED" in result.stdout, result.stdout + result.stderr[-2000:]
    cached = tmp_path / "keras_home" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert cached.read_bytes() == (shared_weights_dir / cached.name).read_bytes()
    # the same weights as loading the file by path
    model = backbones.build_base("mobilenet_v2", weights=shared_weights_dir / cached.name, image_size=224)
    expected = float(np.abs(model.get_layer("Conv1").get_weights()[0]).sum())
    assert float(result.stdout.split("LOADED")[1]) == pytest.approx(expected, rel=1e-6)


def test_the_pretrained_imagenet_classifier_recognises_a_tiger(shared_weights_dir, shared_photos, monkeypatch):
    from helpers.data import folders as data

    monkeypatch.setenv("WORKBOOK_WEIGHTS_DIR", str(shared_weights_dir))
    model = backbones.build_backbone("mobilenet_0.25", weights="imagenet", include_top=True)
    tigers = sorted((shared_photos / "val" / "tiger").glob("*.jpg"))[:4]
    top = backbones.decode_predictions(model.predict(data.load_images(tigers, 224), verbose=0), top=3)
    assert sum(row[0][0] == "tiger" for row in top) >= 3, top
