# SPDX-License-Identifier: Apache-2.0
"""Packaging metadata: pyproject.toml uses the PEP 639 SPDX license string (the TOML-table form
is deprecated by setuptools) and asks for a setuptools that understands it (77 or later)."""
import os
import re

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_license_is_an_spdx_string():
    assert _pyproject()["project"]["license"] == "Apache-2.0"


def _min_version(reqs, name):
    for r in reqs:
        m = re.fullmatch(r"\s*%s\s*>=\s*([0-9][0-9.]*)\s*" % name, r)
        if m:
            return tuple(int(x) for x in m.group(1).split("."))
    raise AssertionError(f"no '{name}>=' lower bound in {reqs}")


def test_setuptools_supports_spdx_licenses():
    assert _min_version(_pyproject()["build-system"]["requires"], "setuptools") >= (77,)
    with open(os.path.join(ROOT, "tests", "requirements.txt")) as f:
        reqs = [line for line in f.read().splitlines() if line.startswith("setuptools")]
    assert _min_version(reqs, "setuptools") >= (77,)
