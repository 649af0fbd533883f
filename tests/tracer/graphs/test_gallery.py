"""``python -m tracer.graphs.gallery`` regenerates the documentation pictures."""

from __future__ import annotations

from tracer.graphs import gallery


def test_gallery_writes_labelled_svgs(tmp_path, svg_text):
    written = gallery.main(["--out", str(tmp_path), "--only", "syncbn"])
    assert written == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syncbn.svg"]
    text = svg_text(str(tmp_path / "syncbn.svg"))
    assert "samples.syncbn, 2 gloo ranks)" in text or "(synthesized trace" in text
    assert "rank 1" in text and "all_gather" in text


def test_every_documented_picture_is_committed():
    import os

    docs = os.path.normpath(gallery.DOCS)
    for name in gallery.PICTURES:
        assert os.path.exists(os.path.join(docs, f"{name}.svg")), name
    with open(os.path.join(docs, "..", "graphs.md"), encoding="utf-8") as fh:
        page = fh.read()
    for name in gallery.PICTURES:
        assert f"(graphs/{name}.svg)" in page
