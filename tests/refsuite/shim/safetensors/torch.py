# SPDX-License-Identifier: Apache-2.0
"""safetensors.torch is weightlift.torch (see __init__.py)."""
import sys

import weightlift.torch as _m

sys.modules[__name__] = _m
