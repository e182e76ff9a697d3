# SPDX-License-Identifier: Apache-2.0
"""The test environment has the reference package the conformance suite compares against."""
import safetensors


def test_reference_present():
    assert safetensors.__version__
