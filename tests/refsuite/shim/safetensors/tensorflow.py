# SPDX-License-Identifier: Apache-2.0
"""safetensors.tensorflow is weightlift.tensorflow (see __init__.py)."""
import sys

import weightlift.tensorflow as _m

sys.modules[__name__] = _m
