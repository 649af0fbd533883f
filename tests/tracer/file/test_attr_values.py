"""Trace.attr_values: the vectorised attrs(row).get(key) the detectors use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tracer

SAMPLE = str(Path(__file__).parents[2] / "data" / "sample.tsdb")


@pytest.mark.parametrize("key", ["path", "cls", "hook_id", "wait_ns", "absent"])
def test_attr_values_equals_attrs_row_by_row(key):
    t = tracer.load(SAMPLE)
    rows = np.arange(t.n)[::-1]  # any order, every block
    expected = [t.attrs(int(r)).get(key, "none") for r in rows]
    assert t.attr_values(rows, key, "none").tolist() == expected
    assert any(v != "none" for v in expected) or key == "absent"
