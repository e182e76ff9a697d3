# SPDX-License-Identifier: Apache-2.0
"""Alias of weightlift.jax under the reference's module name (safetensors.flax)."""
from .jax import _jnp2np, _np2jnp, load, load_file, numpy, safe_open, save, save_file  # noqa: F401

__all__ = ["load_file", "load", "save_file", "save"]
