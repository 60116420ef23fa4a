"""The host-side postprocessing matches the golden fixtures shared with the C++ runtime.

cpp/tests/fixtures/postprocess_golden.txt (synthetic masks only) is written by
cpp/tests/make_postprocess_fixtures.py and checked here and by ctest (postprocess_golden),
so Python and C++ clean and label masks identically.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lungseg import postprocess
from lungseg.postprocess import clean_mask, label_lungs

GENERATOR = Path(__file__).resolve().parents[1] / "cpp" / "tests" / "make_postprocess_fixtures.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_postprocess_fixtures", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
CASES = GEN.read_fixtures()


@pytest.mark.parametrize("runs_per_pixel", [np.inf, 0.0], ids=["run graph", "opencv"])
@pytest.mark.parametrize("name,mask,expected", CASES, ids=[c[0] for c in CASES])
def test_python_postprocess_matches_golden(name, mask, expected, runs_per_pixel, monkeypatch):
    monkeypatch.setattr(postprocess, "GRAPH_MAX_RUNS_PER_PIXEL", runs_per_pixel)  # both ways of joining runs
    clean = clean_mask(mask)
    np.testing.assert_array_equal(clean, expected["clean"], err_msg=f"{name}: clean_mask")
    np.testing.assert_array_equal(label_lungs(mask), expected["labels"], err_msg=f"{name}: label_lungs")
    np.testing.assert_array_equal(label_lungs(clean), expected["clean_labels"], err_msg=f"{name}: label_lungs(clean_mask)")


def test_fixture_file_is_up_to_date():
    assert GEN.FIXTURE.read_text() == GEN.render(), f"run python {GENERATOR} to regenerate the fixtures"
