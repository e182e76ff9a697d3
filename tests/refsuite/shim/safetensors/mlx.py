# SPDX-License-Identifier: Apache-2.0
"""safetensors.mlx is weightlift.mlx (see __init__.py)."""
import sys

import weightlift.mlx as _m

sys.modules[__name__] = _m
