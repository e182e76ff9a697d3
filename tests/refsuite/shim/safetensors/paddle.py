# SPDX-License-Identifier: Apache-2.0
"""safetensors.paddle is weightlift.paddle (see __init__.py)."""
import sys

import weightlift.paddle as _m

sys.modules[__name__] = _m
