"""Renaming, merging and splitting clusters into a taxonomy that persists and becomes tags."""

import numpy as np
import pytest

from mmcore.analysis.maps import analyze
from mmcore.analysis.taxonomy import export_taxonomy, load_taxonomy, save_as_tags
from mmcore.errors import MMError
from mmcore.spaces import SpaceInfo, normalize

DIM = 24


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    from mmcore.config import Settings
    from mmcore.workspace import Workspace

    rng = np.random.default_rng(11)
    centers = normalize(rng.standard_normal((3, DIM)))
    truth = np.repeat(np.arange(3), 50)
    vectors = normalize(centers[truth] + 0.06 * rng.standard_normal((150, DIM)))
    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("taxonomy-data")))
    collection = ws.store.collection("tax", SpaceInfo("vecs", "synthetic", "", DIM))
    ids = [f"i{i:03d}" for i in range(150)]
    collection.add(ids, vectors, [{"modality": "image", "truth": int(t)} for t in truth], [None] * 150)
    analysis = analyze(ws, "tax", "vecs")
    assert len(analysis.cluster_ids) == 3
    auto = {c: f"cluster {c}" for c in analysis.cluster_ids}
    return ws, collection, analysis, auto, dict(zip(ids, vectors))


def fresh(ws):
    taxonomy = load_taxonomy(ws.settings.data_dir, "tax", "vecs")
    taxonomy.reset()
    return taxonomy


def test_rename_persists_and_applies(mapped):
    ws, _, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "  sea birds ")
    taxonomy.save()
    again = load_taxonomy(ws.settings.data_dir, "tax", "vecs")
    labels, names = again.apply(analysis, auto)
    assert names[0] == "sea birds" and names[1] == "cluster 1"
    np.testing.assert_array_equal(labels, analysis.labels)
    with pytest.raises(MMError):
        again.rename(analysis, 1, "  ")


def test_merge_moves_members_and_keeps_the_target_name(mapped):
    ws, _, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 2, "both")
    taxonomy.merge(analysis, [1], into=2)
    labels, names = taxonomy.apply(analysis, auto)
    assert set(labels[analysis.labels == 1]) == {2}
    assert (labels == 2).sum() == ((analysis.labels == 1) | (analysis.labels == 2)).sum()
    assert names[2] == "both"
    taxonomy.rename(analysis, 1, "renamed through the merge")  # a merged label renames its target
    assert taxonomy.apply(analysis, auto)[1][2] == "renamed through the merge"


def test_split_makes_two_parts_of_the_original_members(mapped):
    ws, _, analysis, auto, vectors = mapped
    taxonomy = fresh(ws)
    first, second = taxonomy.split(analysis, 0, vectors, auto)
    labels, names = taxonomy.apply(analysis, auto)
    original = set(np.flatnonzero(analysis.labels == 0))
    parts = set(np.flatnonzero(labels == first)) | set(np.flatnonzero(labels == second))
    assert parts == original and (labels == first).any() and (labels == second).any()
    assert not (labels == 0).any()
    assert (names[first], names[second]) == ("cluster 0 1", "cluster 0 2")
    taxonomy.save()
    reloaded, _ = load_taxonomy(ws.settings.data_dir, "tax", "vecs").apply(analysis, auto)
    np.testing.assert_array_equal(reloaded, labels)


def test_names_become_tags_and_replace_older_ones(mapped):
    ws, collection, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "gulls")
    labels, names = taxonomy.apply(analysis, auto)
    assert save_as_tags(collection, analysis, labels, names) == int((labels >= 0).sum())
    member = analysis.ids[int(np.flatnonzero(labels == 0)[0])]
    assert "taxon:gulls" in collection.get([member])[0]["metadata"]["tags"]
    taxonomy.rename(analysis, 0, "terns")
    labels, names = taxonomy.apply(analysis, auto)
    save_as_tags(collection, analysis, labels, names)
    tags = collection.get([member])[0]["metadata"]["tags"]
    assert "taxon:terns" in tags and "taxon:gulls" not in tags
    exported = export_taxonomy(analysis, labels, names)
    assert {c["name"] for c in exported["clusters"]} >= {"terns"}
    assert sum(c["size"] for c in exported["clusters"]) == int((labels >= 0).sum())


def test_edits_of_an_older_fit_are_not_applied(mapped):
    ws, _, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "old fit")
    refit = analyze(ws, "tax", "vecs", refit=True)
    refit.fit_key = "another-fit"  # a refit on other items or parameters gets another key
    assert not taxonomy.applies_to(refit)
    assert taxonomy.apply(refit, auto)[1] == auto
