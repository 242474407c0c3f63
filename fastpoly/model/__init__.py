"""The network model: architectures as an input shape and a tuple of layers, and the optimizer table.

Pure NumPy; imports nothing above the domain model (checked by ``lint-imports``).

* :mod:`~fastpoly.model.layers` -- the :class:`Layer` protocol (parameter layout and Philox draw
  order, reference forward/backward by the FMA rule, NNGP map) and the layer types
  (:class:`Dense`, :class:`Activation`);
* :mod:`~fastpoly.model.architecture` -- :class:`Architecture`;
* :mod:`~fastpoly.model.spec` -- the architecture-string parser with its token registry;
* :mod:`~fastpoly.model.mlp` -- :class:`MLP`, the fully connected constructor;
* :mod:`~fastpoly.model.conv` -- the spatial layers (:class:`Conv2D`, pooling, :class:`Flatten`);
* :mod:`~fastpoly.model.cnn` -- :func:`CNN` and the anchor family :func:`anchor_cnn`;
* :mod:`~fastpoly.model.inputs` -- the one input rule (all Boolean inputs and their limits);
* :mod:`~fastpoly.model.optimizers` -- the optimizer table (codes, defaults, the recipe's
  array layout, the NumPy update) and the generated ``kernels/optimizers.cuh``.
"""
from __future__ import annotations

from fastpoly.model.architecture import Architecture
from fastpoly.model.cnn import CNN, anchor_cnn
from fastpoly.model.conv import AvgPool, Conv2D, Flatten, GlobalAvgPool, MaxPool  # noqa: E402  (after spec)
from fastpoly.model.inputs import BOOLEAN_INPUT_LIMITS, all_boolean_inputs, boolean_inputs, check_boolean_bits
from fastpoly.model.layers import Activation, Dense, Init, Layer, NNGPState, ParamBlock
from fastpoly.model.mlp import MLP, parse_arch
from fastpoly.model.optimizers import OPTIMIZERS, get_optimizer
from fastpoly.model.spec import architecture_from_dict, as_architecture, parse, register_token

__all__ = [
    "Activation", "Architecture", "BOOLEAN_INPUT_LIMITS", "Dense", "Init", "Layer", "MLP", "NNGPState",
    "OPTIMIZERS", "ParamBlock", "all_boolean_inputs", "boolean_inputs", "check_boolean_bits", "get_optimizer",
    "architecture_from_dict", "as_architecture", "parse", "parse_arch", "register_token",
    "AvgPool", "CNN", "Conv2D", "Flatten", "GlobalAvgPool", "MaxPool", "anchor_cnn",
]
