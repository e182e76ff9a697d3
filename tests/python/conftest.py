# SPDX-License-Identifier: Apache-2.0
"""Shared pytest configuration for the Python tests: the `large` marker (tests that write
multi-GiB files; skipped unless `--run-large` or WEIGHTLIFT_LARGE=1) and small helpers used by
the test_api_* files, which compare the `weightlift` package against the reference
`safetensors` 0.8.0 package."""
import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-large", action="store_true", default=False,
                     help="run tests marked `large` (multi-GiB files, minutes)")


def pytest_configure(config):
    config.addinivalue_line("markers", "large: writes/reads multi-GiB files; needs --run-large "
                            "or WEIGHTLIFT_LARGE=1")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-large") or os.environ.get("WEIGHTLIFT_LARGE") == "1":
        return
    skip = pytest.mark.skip(reason="large test: use --run-large or WEIGHTLIFT_LARGE=1")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)
