# SPDX-License-Identifier: Apache-2.0
"""Replays the get_slice fuzz corpus (fuzz/corpus/slice/, kept by fuzz/fuzz_slice.py under
atheris) without atheris: each input's index against weightlift's and the reference's
get_slice of the same tensor, as the fuzz target checks them."""
import importlib.util
import pathlib

import pytest

pytest.importorskip("weightlift")
pytest.importorskip("safetensors")

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "fuzz" / "corpus" / "slice").glob("*"))


def _target():
    spec = importlib.util.spec_from_file_location("fuzz_slice", ROOT / "fuzz" / "fuzz_slice.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_corpus_replays():
    target = _target()
    assert CORPUS, "fuzz/corpus/slice is empty"
    for path in CORPUS:
        try:
            target.check(path.read_bytes())
        except AssertionError as e:
            raise AssertionError(f"fuzz/corpus/slice/{path.name}: {e}") from None
