# SPDX-License-Identifier: Apache-2.0
"""python -m weightlift.hook install|remove|status [--site-dir DIR]

Manages the start-up hook (a .pth file in site-packages) through which the environment
variable WEIGHTLIFT_AS_SAFETENSORS=1 makes `import safetensors` resolve to weightlift in every
Python process of this environment (docs/as-safetensors.md). Nothing is installed until you
run `install`; the variable does nothing without the hook, and the hook nothing without the
variable."""
from __future__ import annotations

import argparse
import os
import sys

from . import _shim


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weightlift.hook", description=__doc__.split("\n\n")[1])
    ap.add_argument("action", choices=["install", "remove", "status"])
    ap.add_argument("--site-dir", help="directory for the .pth file (default: site-packages)")
    a = ap.parse_args(argv)
    p = _shim.pth_path(a.site_dir)
    if a.action == "install":
        print(f"installed {_shim.install_pth(a.site_dir)}: WEIGHTLIFT_AS_SAFETENSORS=1 now makes "
              "`import safetensors` load weightlift")
    elif a.action == "remove":
        print(f"removed {p}" if _shim.remove_pth(a.site_dir) else f"no hook at {p}")
    else:
        on = os.environ.get(_shim.ENV, "") not in ("", "0")
        print(f"hook: {'installed' if os.path.exists(p) else 'not installed'} ({p}); "
              f"{_shim.ENV}={'1' if on else 'unset'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
