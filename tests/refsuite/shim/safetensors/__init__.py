# SPDX-License-Identifier: Apache-2.0
"""Import shim for running the reference safetensors' own test suite against weightlift
(tools/refsuite.sh puts the folder above this one first on sys.path): `safetensors` re-exports
weightlift's top level, and each `safetensors.<framework>` module file replaces itself in
sys.modules with `weightlift.<framework>`, so `from safetensors.torch import X` is weightlift's X.
Not installed with the package: weightlift does not take the reference's name by default."""
import weightlift as _wl
from weightlift import (  # noqa: F401
    SafetensorError,
    TensorSpec,
    __version__,
    _safe_open_handle,
    deserialize,
    safe_open,
    serialize,
    serialize_file,
)

__weightlift__ = _wl.__file__
