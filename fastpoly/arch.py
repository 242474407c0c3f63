"""Random-network architectures (:class:`MLP`) and standard input sets.

Both live in the network model (:mod:`fastpoly.model`); this module keeps their public names.
"""
from __future__ import annotations

from fastpoly.model.inputs import boolean_inputs
from fastpoly.model.mlp import MLP, parse_arch

__all__ = ["MLP", "boolean_inputs", "parse_arch"]
