"""Renaming, merging and splitting clusters into a taxonomy that persists, survives refits by name, and
becomes tags — on Gaussian blobs in a real Chroma store."""

import json

import numpy as np
import pytest

from mmcore.analysis.clusters import Hdbscan
from mmcore.analysis.maps import analyze
from mmcore.analysis.projection import Umap
from mmcore.analysis.taxonomy import export_taxonomy, load_taxonomy, save_as_tags
from mmcore.errors import MMError
from mmcore.spaces import SpaceInfo, normalize

DIM = 24
BLOBS, PER_BLOB = 3, 50


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """Three well-separated blobs of 50 vectors; auto names "auto <label>"."""
    from mmcore.config import Settings
    from mmcore.workspace import Workspace

    rng = np.random.default_rng(11)
    centers = normalize(rng.standard_normal((BLOBS, DIM)))
    truth = np.repeat(np.arange(BLOBS), PER_BLOB)
    vectors = normalize(centers[truth] + 0.06 * rng.standard_normal((len(truth), DIM)))
    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("taxonomy-data")))
    collection = ws.store.collection("tax", SpaceInfo("vecs", "synthetic", "", DIM))
    ids = [f"i{i:03d}" for i in range(len(truth))]
    collection.add(ids, vectors, [{"modality": "image", "truth": int(t)} for t in truth], [None] * len(ids))
    analysis = analyze(ws, "tax", "vecs")
    assert len(analysis.cluster_ids) == BLOBS
    auto = {c: f"auto {c}" for c in analysis.cluster_ids}
    return ws, collection, analysis, auto, dict(zip(ids, truth))


def fresh(ws):
    taxonomy = load_taxonomy(ws, "tax", "vecs")
    taxonomy.reset()
    return taxonomy


def members(analysis, labels, label) -> set[str]:
    return {analysis.ids[i] for i in np.flatnonzero(labels == label)}


def test_rename_persists_and_applies(mapped):
    ws, _, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "  sea birds ")
    taxonomy.save()
    assert taxonomy.path == ws.settings.data_dir / "taxonomy" / "tax.vecs.json"
    again = load_taxonomy(ws, "tax", "vecs")
    labels, names = again.apply(analysis, auto)
    assert names[0] == "sea birds" and names[1] == "auto 1"
    np.testing.assert_array_equal(labels, analysis.labels)
    with pytest.raises(MMError, match="empty"):
        again.rename(analysis, 1, "  ")
    with pytest.raises(MMError, match="no cluster 99"):
        again.rename(analysis, 99, "nothing")
    with pytest.raises(MMError, match="Noise"):
        again.rename(analysis, -1, "noise")


def test_merge_moves_members_and_keeps_the_target_name(mapped):
    ws, _, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 2, "both")
    taxonomy.rename(analysis, 1, "swallowed")
    taxonomy.merge(analysis, [1], into=2)
    labels, names = taxonomy.apply(analysis, auto)
    assert members(analysis, labels, 2) == members(analysis, analysis.labels, 1) | members(analysis, analysis.labels, 2)
    assert not (labels == 1).any() and names[2] == "both" and "swallowed" not in names.values()
    taxonomy.rename(analysis, 1, "renamed through the merge")  # a merged label renames its target
    assert taxonomy.apply(analysis, auto)[1][2] == "renamed through the merge"
    taxonomy.merge(analysis, [2], into=0)  # merging a merged cluster moves everything it holds
    labels, _ = taxonomy.apply(analysis, auto)
    assert set(labels.tolist()) - {-1} == {0}
    with pytest.raises(MMError, match="Noise"):
        taxonomy.merge(analysis, [0], into=-1)


def test_split_makes_two_parts_of_the_original_members_that_survive_a_reload(mapped):
    ws, collection, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "gulls")
    first, second = taxonomy.split(analysis, 0, collection, auto)
    labels, names = taxonomy.apply(analysis, auto)
    original = members(analysis, analysis.labels, 0)
    a, b = members(analysis, labels, first), members(analysis, labels, second)
    assert a and b and a | b == original and not a & b
    assert first > max(analysis.cluster_ids) and second == first + 1
    assert not (labels == 0).any()
    assert (names[first], names[second]) == ("gulls 1", "gulls 2")
    np.testing.assert_array_equal(labels[analysis.labels != 0], analysis.labels[analysis.labels != 0])
    third, fourth = taxonomy.split(analysis, first, collection, auto)  # parts can be split again
    assert third == second + 1 and taxonomy.apply(analysis, auto)[1][fourth] == "gulls 1 2"
    taxonomy.save()
    reloaded = load_taxonomy(ws, "tax", "vecs").apply(analysis, auto)
    np.testing.assert_array_equal(reloaded[0], taxonomy.apply(analysis, auto)[0])
    assert reloaded[1] == taxonomy.apply(analysis, auto)[1]


def test_tiny_or_noise_clusters_are_not_split(mapped):
    ws, collection, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    with pytest.raises(MMError, match="Noise"):
        taxonomy.split(analysis, -1, collection, auto)
    label = 0
    while (taxonomy.apply(analysis, auto)[0] == label).sum() >= 4:  # each split leaves a smaller first part
        label = taxonomy.split(analysis, label, collection, auto)[0]
    with pytest.raises(MMError, match="too few to split"):
        taxonomy.split(analysis, label, collection, auto)


def test_names_become_tags_and_replace_older_ones(mapped):
    ws, collection, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "gulls")
    labels, names = taxonomy.apply(analysis, auto)
    assert save_as_tags(collection, analysis, labels, names) == int((labels >= 0).sum())
    member = analysis.ids[int(np.flatnonzero(labels == 0)[0])]
    other = analysis.ids[int(np.flatnonzero(labels == 1)[0])]
    assert "taxon:gulls" in collection.get([member])[0]["metadata"]["tags"]
    assert collection.get([other])[0]["metadata"]["tags"] == ["taxon:auto 1"]
    collection.update_tags([member], add=["keep me"])
    taxonomy.rename(analysis, 0, "terns")
    taxonomy.merge(analysis, [1], into=0)
    labels, names = taxonomy.apply(analysis, auto)
    save_as_tags(collection, analysis, labels, names)
    assert collection.get([member])[0]["metadata"]["tags"] == ["keep me", "taxon:terns"]
    assert collection.get([other])[0]["metadata"]["tags"] == ["taxon:terns"]
    everything = collection.all(with_vectors=False)
    taxa = {t for m in everything.metadatas for t in (m.get("tags") or []) if t.startswith("taxon:")}
    assert taxa == {"taxon:terns", "taxon:auto 2"}
    labels[[analysis.ids.index(member), analysis.ids.index(other)]] = -1  # as if noise now: no taxon
    save_as_tags(collection, analysis, labels, names)
    assert collection.get([member])[0]["metadata"]["tags"] == ["keep me"]
    assert "tags" not in collection.get([other])[0]["metadata"]


def test_export_lists_every_effective_cluster(mapped):
    ws, _, analysis, auto, _ = mapped
    taxonomy = fresh(ws)
    taxonomy.merge(analysis, [1], into=2)
    taxonomy.rename(analysis, 2, "both")
    labels, names = taxonomy.apply(analysis, auto)
    exported = json.loads(json.dumps(export_taxonomy(analysis, labels, names)))
    assert (exported["collection"], exported["space"], exported["items"]) == ("tax", "vecs", len(analysis.ids))
    assert [c["name"] for c in exported["clusters"]] == ["both", "auto 0"]  # largest first
    both = exported["clusters"][0]
    assert both["label"] == 2 and both["size"] == len(both["ids"]) == int((labels == 2).sum())
    assert set(both["ids"]) == members(analysis, analysis.labels, 1) | members(analysis, analysis.labels, 2)
    assert exported["noise"] + sum(c["size"] for c in exported["clusters"]) == len(analysis.ids)


def test_after_a_refit_merges_are_dropped_and_names_follow_their_items(mapped):
    ws, _, analysis, auto, truth = mapped
    taxonomy = fresh(ws)
    taxonomy.rename(analysis, 0, "gulls")
    taxonomy.merge(analysis, [1], into=2)
    taxonomy.rename(analysis, 2, "both")  # spans two blobs: no refitted cluster holds most of it
    taxonomy.save()
    refit = analyze(ws, "tax", "vecs", Umap(seed=3), Hdbscan(min_cluster_size=10))
    assert refit.fit_key != analysis.fit_key and len(refit.cluster_ids) == BLOBS
    taxonomy = load_taxonomy(ws, "tax", "vecs")
    assert not taxonomy.applies_to(refit) and taxonomy.applies_to(analysis)
    auto_refit = {c: f"new {c}" for c in refit.cluster_ids}
    labels, names = taxonomy.apply(refit, auto_refit)
    np.testing.assert_array_equal(labels, refit.labels)  # the merge is not applied to other labels
    gull_blob = {truth[i] for i in members(analysis, analysis.labels, 0)}
    assert len(gull_blob) == 1
    gulls = [c for c, name in names.items() if name == "gulls"]
    assert len(gulls) == 1 and {truth[i] for i in members(refit, labels, gulls[0])} == gull_blob
    assert "both" not in names.values()
    # an edit on the new fit starts from it, keeping the carried name
    other = next(c for c in refit.cluster_ids if c != gulls[0])
    taxonomy.rename(refit, other, "terns")
    assert taxonomy.applies_to(refit) and not taxonomy.merged
    assert {taxonomy.apply(refit, auto_refit)[1][c] for c in (gulls[0], other)} == {"gulls", "terns"}


def test_an_unreadable_file_is_an_error_not_a_silent_reset(mapped):
    ws, _, _, _, _ = mapped
    path = ws.settings.data_dir / "taxonomy" / "broken.vecs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.raises(MMError, match="delete it to start over"):
        load_taxonomy(ws, "broken", "vecs")
    assert not load_taxonomy(ws.settings.data_dir, "nothing-yet", "vecs").edited
