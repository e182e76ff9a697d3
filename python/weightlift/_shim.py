# SPDX-License-Identifier: Apache-2.0
"""Opt-in: make `import safetensors` (and `safetensors.torch`, `.numpy`, ...) resolve to
weightlift, so that libraries written against safetensors (transformers, diffusers, accelerate,
sentence-transformers, ...) load through weightlift without being edited.

Two ways, both off by default (docs/as-safetensors.md has the exact semantics):
- `weightlift.install_as_safetensors()`, called before the library is imported;
- the environment variable WEIGHTLIFT_AS_SAFETENSORS=1, honoured at interpreter start-up by a
  `.pth` file that `python -m weightlift.hook install` writes into site-packages (and
  `python -m weightlift.hook remove` deletes). Without that file the variable does nothing.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import warnings
from typing import List, Optional

ENV = "WEIGHTLIFT_AS_SAFETENSORS"
PTH_NAME = "weightlift-as-safetensors.pth"
# One line: a .pth line starting with "import" is executed by site.py at start-up. It reads
# the variable before importing anything, so an interpreter without it pays one dict lookup.
PTH_LINE = ("import os; os.environ.get('WEIGHTLIFT_AS_SAFETENSORS', '') not in ('', '0') and "
            "__import__('weightlift').install_as_safetensors()\n")


class _Loader(importlib.abc.Loader):
    """Hands out the weightlift module (imported once, as itself) under the safetensors name."""

    def __init__(self, target: str):
        self.target = target
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        # The import system stamped the safetensors spec on the module; it stays weightlift's
        # (importlib.reload, find_spec("weightlift.torch") keep working).
        module.__spec__ = self.spec


class _Finder(importlib.abc.MetaPathFinder):
    """safetensors -> weightlift, safetensors.X -> weightlift.X (first on sys.meta_path)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "safetensors" and not fullname.startswith("safetensors."):
            return None
        mapped = "weightlift" + fullname[len("safetensors"):]
        if mapped not in sys.modules and importlib.util.find_spec(mapped) is None:
            return None  # safetensors.X that weightlift lacks: ModuleNotFoundError as usual
        return importlib.machinery.ModuleSpec(fullname, _Loader(mapped))


_finder: Optional[_Finder] = None


def _shadowed() -> List[str]:
    return sorted(n for n, m in sys.modules.items()
                  if (n == "safetensors" or n.startswith("safetensors."))
                  and not getattr(m, "__name__", "").startswith("weightlift"))


def install_as_safetensors() -> None:
    """Make `import safetensors`, `import safetensors.torch`, `from safetensors import
    safe_open` etc. give weightlift's modules from now on, in this process (idempotent).

    Call it before importing the libraries that should load through weightlift: a module that
    has already done `from safetensors import safe_open` keeps the reference's function. If
    the real safetensors is already imported, its sys.modules entries are replaced (later
    imports get weightlift) and a RuntimeWarning names them. Undo with
    uninstall_as_safetensors()."""
    global _finder
    old = _shadowed()
    if old:
        warnings.warn("weightlift.install_as_safetensors(): safetensors was already imported "
                      f"({', '.join(old)}); modules that imported names from it keep the "
                      "reference's. Call it before importing transformers & co.",
                      RuntimeWarning, stacklevel=2)
        for n in old:
            del sys.modules[n]
    if _finder is None:
        _finder = _Finder()
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall_as_safetensors() -> None:
    """Undo install_as_safetensors(): later imports of safetensors find the real package."""
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for n in [n for n, m in sys.modules.items()
              if (n == "safetensors" or n.startswith("safetensors."))
              and getattr(m, "__name__", "").startswith("weightlift")]:
        del sys.modules[n]


def is_installed() -> bool:
    """True while `import safetensors` resolves to weightlift in this process."""
    return _finder is not None and _finder in sys.meta_path


def pth_path(site_dir: Optional[str] = None) -> str:
    return os.path.join(site_dir or sysconfig.get_paths()["purelib"], PTH_NAME)


def install_pth(site_dir: Optional[str] = None) -> str:
    """Write the start-up hook into site_dir (default: this environment's site-packages);
    returns its path. From then on WEIGHTLIFT_AS_SAFETENSORS=1 in a process's environment
    calls install_as_safetensors() before any user code runs."""
    p = pth_path(site_dir)
    tmp = p + ".tmp"
    with open(tmp, "w") as f:
        f.write(PTH_LINE)
    os.replace(tmp, p)
    return p


def remove_pth(site_dir: Optional[str] = None) -> bool:
    """Delete the start-up hook; True if there was one."""
    try:
        os.unlink(pth_path(site_dir))
        return True
    except FileNotFoundError:
        return False
