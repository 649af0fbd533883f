"""Traces shared by the graph tests, recorded once per session (they only read them)."""

from __future__ import annotations

import re

import pytest

import tracer
from tracer.graphs import synth


@pytest.fixture(scope="session")
def dp_trace(tmp_path_factory):
    """Two DataParallel calls on sim:0/sim:1; the second fails in replica 1 (DeOldify)."""
    path = str(tmp_path_factory.mktemp("dp") / "dp.tsdb")
    return tracer.load(synth.record_dataparallel(path, steps=2))


@pytest.fixture(scope="session")
def syncbn_trace(tmp_path_factory):
    """Two forked ranks, two SyncBatchNorm layers, two steps."""
    path = str(tmp_path_factory.mktemp("syncbn") / "syncbn.tsdb")
    return tracer.load(synth.record_syncbn(path, world_size=2, steps=2))


@pytest.fixture(scope="session")
def imports_trace(tmp_path_factory):
    """A synthesized ``import torch`` of 150 modules."""
    path = str(tmp_path_factory.mktemp("imports") / "imports.tsdb")
    return tracer.load(synth.record_imports(path, modules=150))


def _svg_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        body = fh.read()
    text = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", body))
    for entity, char in (("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&#45;", "-")):
        text = text.replace(entity, char)
    return text


@pytest.fixture
def svg_text():
    """The visible text of an SVG, entities decoded, for 'the picture names X' checks."""
    return _svg_text
