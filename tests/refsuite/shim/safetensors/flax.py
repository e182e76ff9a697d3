# SPDX-License-Identifier: Apache-2.0
"""safetensors.flax is weightlift.flax (see __init__.py)."""
import sys

import weightlift.flax as _m

sys.modules[__name__] = _m
