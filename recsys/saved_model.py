"""A published model's ``serving_default`` signature, loaded with TensorFlow alone and checked against the contract
its model promises (input and output names, dtypes, shapes).

Every model's runtime calls its SavedModel through :class:`ServingSignature`, so serving, batch scoring, the
training job's held-out evaluation and the benchmarks all exercise the artifact exactly as published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from recsys.errors import ModelContractError
from recsys.manifest import Signature, TensorSpec

NAME = "serving_default"


class ServingSignature:
    """The ``serving_default`` signature of the SavedModel in ``saved_model_dir``."""

    def __init__(self, saved_model_dir: Path, inputs: dict[str, tf.TensorSpec],
                 outputs: dict[str, tf.TensorSpec]) -> None:
        try:
            self._loaded = tf.saved_model.load(str(saved_model_dir))
        except (OSError, ValueError, tf.errors.OpError) as err:
            raise ModelContractError(f"{saved_model_dir}: not a loadable SavedModel: {err}") from err
        function = self._loaded.signatures.get(NAME)
        if function is None:
            raise ModelContractError(f"{saved_model_dir}: no '{NAME}' signature, found {sorted(self._loaded.signatures)}")
        _check_specs(saved_model_dir, "input", function.structured_input_signature[1], inputs)
        _check_specs(saved_model_dir, "output", function.structured_outputs, outputs)
        self._function = function
        self._inputs = inputs

    def __call__(self, **values) -> dict[str, np.ndarray]:
        """Call the signature with numpy or Python values, converted to the contract's dtypes."""
        out = self._function(**{name: tf.constant(values[name], spec.dtype) for name, spec in self._inputs.items()})
        return {name: tensor.numpy() for name, tensor in out.items()}


def describe(inputs: dict[str, tf.TensorSpec], outputs: dict[str, tf.TensorSpec]) -> Signature:
    """A signature contract as the manifest records it."""
    def specs(tensors: dict[str, tf.TensorSpec]) -> dict[str, TensorSpec]:
        return {name: TensorSpec(dtype=spec.dtype.name, shape=spec.shape.as_list()) for name, spec in tensors.items()}
    return Signature(name=NAME, inputs=specs(inputs), outputs=specs(outputs))


def _check_specs(where: Path, kind: str, actual: dict, expected: dict[str, tf.TensorSpec]) -> None:
    if set(actual) != set(expected):
        raise ModelContractError(f"{where}: signature '{NAME}' has {kind}s {sorted(actual)}, expected {sorted(expected)}")
    for name, spec in expected.items():
        got = actual[name]
        if got.dtype != spec.dtype or not spec.shape.is_compatible_with(got.shape):
            raise ModelContractError(f"{where}: signature {kind} '{name}' is {got.dtype.name}{got.shape}, "
                                     f"expected {spec.dtype.name}{spec.shape}")
