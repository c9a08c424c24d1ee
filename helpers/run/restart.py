"""Training the same model again, from a new optimizer, without Keras tracing its training step again.

A comparison trains one top over several draws of photos and several learning rates (notebooks 04,
05, 05a and 07). ``compile`` makes Keras trace the training step anew on the next ``fit``: about as
long as the whole fit of a head on a few stored features. :func:`restart` gives the state a new
``compile_model`` gives (Adam at step 0, its moments zero, the learning rate asked for) while Keras
keeps the step it traced: the same training, bit for bit (``tests/test_train.py``), under TensorFlow
and PyTorch. Under JAX it compiles anew (:func:`restart` says why).
"""

from __future__ import annotations

import weakref

import keras

from helpers.model.lesson import compile_model

#: The models :func:`restart` compiled: their Adam, and the trainable weights its training step updates.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def restart(model: keras.Model, learning_rate: float) -> keras.Model:
    """``compile_model(model, learning_rate)``, or, where it already ran here, its result without tracing again.

    It compiles the first time, and again whenever ``model`` trains other weights than then (a
    layer frozen or unfrozen since) or was compiled elsewhere since. Otherwise its Adam's variables
    go back to zero (the step count and the moments: where a new Adam starts) and its learning rate
    to ``learning_rate``. A wrapped optimizer (mixed precision's loss scaling) is compiled anew, and so
    is every model under JAX: there a kept step draws its dropout masks otherwise than a new compile
    (measured: the same training under TensorFlow and PyTorch, not under JAX).
    """
    trainable = [id(v) for v in model.trainable_variables]
    optimizer = getattr(model, "optimizer", None)
    known = _COMPILED.get(model)
    if (
        known is None
        or known[0] is not optimizer
        or known[1] != trainable
        or type(optimizer) is not keras.optimizers.Adam
        or keras.backend.backend() == "jax"
    ):
        compile_model(model, learning_rate)
        _COMPILED[model] = (model.optimizer, trainable)
        return model
    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    optimizer.learning_rate = learning_rate
    return model
