"""The domain adapter: learned from pairs or tags, measured on held-out items, written as a derived space only when
it does better; the original vectors never change."""

from __future__ import annotations

import numpy as np
import pytest
from test_evaluate import write_import

from mmcore.adapter import SUFFIX, adapt
from mmcore.cli import main
from mmcore.config import Settings
from mmcore.demo import load_digits_demo
from mmcore.errors import MMError, NotFound
from mmcore.evaluate import evaluate
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

N, D = 300, 32


@pytest.fixture
def ws(tmp_path):
    return Workspace(Settings(data_dir=tmp_path / "data"))


def pairs_collection(ws, folder, related: bool, name: str = "pairs"):
    """N captions (random unit vectors) and N pictures: a distortion of their caption plus noise (`related`: a
    domain gap an adapter can learn), or random (nothing to learn)."""
    rng = np.random.default_rng(1)
    captions = rng.normal(size=(N, D))
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    gap = 0.3 * np.eye(D) + rng.normal(size=(D, D)) / np.sqrt(D)
    pictures = captions @ gap + 0.2 * rng.normal(size=(N, D)) if related else rng.normal(size=(N, D))
    rows = [{"id": f"img{i}", "kind": "picture"} for i in range(N)] + [
        {"id": f"cap{i}", "text": f"caption {i}", "pair_of": f"img{i}"} for i in range(N)]
    import_vectors(ws, *write_import(folder, np.concatenate([pictures, captions]), rows), collection=name)


def test_pairs_adapter_is_kept_as_a_derived_space(ws, tmp_path):
    pairs_collection(ws, tmp_path / "in", related=True)
    original = ws.store.open("pairs", "custom").all()
    report = adapt(ws, "pairs", "custom")
    assert (report.source, report.train, report.held_out) == ("pairs", 240, 60)
    assert report.after > report.before + 0.2 and report.kept  # the planted gap is learned
    assert report.derived == "custom" + SUFFIX and report.written == 2 * N

    derived = ws.store.open("pairs", report.derived)
    assert derived.space.model_id == "adapted:imported:v.npy"
    items = derived.all()
    assert items.ids == original.ids and items.metadatas == original.metadatas and items.documents == original.documents
    pictures = np.array([m["modality"] == "vector" for m in items.metadatas])
    np.testing.assert_allclose(items.vectors[~pictures], original.vectors[~pictures], atol=1e-6)  # captions as they were
    assert not np.allclose(items.vectors[pictures], original.vectors[pictures], atol=1e-3)  # pictures moved
    np.testing.assert_array_equal(ws.store.open("pairs", "custom").all().vectors, original.vectors)  # originals untouched
    assert (ws.settings.data_dir / "adapters" / "pairs.custom-adapted.npy").exists()
    before, after = evaluate(ws, "pairs", "custom").retrieval[0], evaluate(ws, "pairs", report.derived).retrieval[0]
    assert after.recall[5] > before.recall[5] and after.mean_rank < before.mean_rank

    again = adapt(ws, "pairs", "custom")  # the derived space is replaced, not refused
    assert again.written == 2 * N and ws.store.open("pairs", again.derived).count() == 2 * N


def test_an_adapter_that_does_no_better_is_not_kept(ws, tmp_path):
    pairs_collection(ws, tmp_path / "in", related=False, name="noise")
    report = adapt(ws, "noise", "custom")
    assert not report.kept and report.derived is None and report.after <= report.before + 1e-9
    with pytest.raises(NotFound):
        ws.store.open("noise", "custom" + SUFFIX)
    assert "not kept: it does no better on held-out items" in report.lines()


def test_tags_adapter_on_the_digits(ws, monkeypatch, capsys):
    """The digits tagged with their labels: moving each digit towards its tag's centre separates them better on
    digits it never saw (held-out precision@10 up)."""
    load_digits_demo(ws)
    target = ws.store.open("digits-demo", "pixels")
    items = target.all(with_vectors=False)
    for digit in range(10):
        target.update_tags([i for i, m in zip(items.ids, items.metadatas) if m["label"] == digit], add=[str(digit)])
    report = adapt(ws, "digits-demo", "pixels", write=False)
    assert (report.source, report.train, report.held_out) == ("tags", 1438, 359)
    assert report.kept and report.after > report.before and report.derived is None
    ws.close()
    monkeypatch.setenv("MMCORE_DATA_DIR", str(ws.settings.data_dir))
    assert main(["adapt", "--collection", "digits-demo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"tag precision@10 on held-out items: {report.before:.1%} before, {report.after:.1%} after" in out
    assert "kept (not written: --dry-run)" in out
    assert ws.store.spaces("digits-demo") == ["pixels"]


def test_too_few_pairs(ws, tmp_path):
    rows = [{"id": "a"}, {"id": "b", "text": "x", "pair_of": "a"}]
    import_vectors(ws, *write_import(tmp_path / "in", np.eye(2), rows), collection="few")
    with pytest.raises(MMError, match="at least 10 pictures"):
        adapt(ws, "few", "custom", "pairs")
    with pytest.raises(MMError, match="two tags"):
        adapt(ws, "few", "custom")
