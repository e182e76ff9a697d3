# SPDX-License-Identifier: Apache-2.0
"""safetensors.numpy is weightlift.numpy (see __init__.py)."""
import sys

import weightlift.numpy as _m

sys.modules[__name__] = _m
