"""A read-only viewer can't make the server fit: the real Map and Clusters pages (Streamlit's AppTest) show the map
an editor made, with the settings disabled, and whatever widget values reach the server start no fit and write
no cache files. Read-only here: editors are listed but login is off, so nobody is recognised as one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mmcore.analysis.clusters import Hdbscan
from mmcore.analysis.maps import AnalysisCache, analyze
from mmcore.analysis.projection import Umap
from mmcore.config import Settings
from mmcore.spaces import SpaceInfo, normalize
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
EDITORS_CHOICE = Hdbscan(40)  # what "an editor" fitted: two plain blobs make two clusters, a coarse clustering


@pytest.fixture
def viewer_data(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", collection="shared")
    ws = Workspace(settings)
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((2, 16)))
    labels = np.repeat([0, 1], 600)
    vectors = normalize(centers[labels] + 0.05 * rng.standard_normal((1200, 16)))
    target = ws.store.collection("shared", SpaceInfo("vecs", "synthetic", "", 16))
    target.add([f"i{i:04d}" for i in range(1200)], vectors, [{"modality": "vector"}] * 1200, [None] * 1200)
    made = analyze(ws, "shared", "vecs", hdbscan=EDITORS_CHOICE)
    assert made.coarse == "only 2 clusters for 1,200 items"
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # the app opens the store itself
    monkeypatch.setenv("MMCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MMCORE_COLLECTION", "shared")
    monkeypatch.setenv("MMCORE_EDITORS", "editor@example.com")
    import streamlit as st

    st.cache_resource.clear()
    cache = AnalysisCache(settings.data_dir / "cache", "shared", "vecs", Umap(), Hdbscan())
    yield cache
    st.cache_resource.clear()


def files(cache: AnalysisCache) -> set[str]:
    """The fits and results cached (cluster names, a cheap derived file, may be added for the map shown)."""
    return {p.name for p in cache.dir.iterdir() if not p.name.startswith("names-")}


def forged(widget):
    """The widget as a crafted request would treat it: AppTest, like a browser, won't change a disabled widget,
    but anything that speaks Streamlit's protocol can send the server a value for it (Streamlit 1.67 itself
    discards values sent for disabled widgets; `ui.analysis` checks again, see the next test)."""
    widget.proto.disabled = False
    return widget


def asks_for_other_settings():
    """A page that asks ui.analysis for other settings and a refit, as a page with a forgotten guard would."""
    import streamlit as st

    import ui
    from mmcore.analysis.clusters import Hdbscan
    from mmcore.analysis.projection import Umap

    ui.init_state()
    analysis = ui.analysis("vecs", Umap(40, 0.5), Hdbscan(12, selection="leaf"), refit=True)
    st.text(f"got {analysis.umap.n_neighbors} {analysis.hdbscan.min_cluster_size} {analysis.hdbscan.selection} "
            f"cached={analysis.from_cache}")


def caption(app: AppTest) -> str:
    return next(c.value for c in app.caption if "UMAP neighbours" in c.value)


def test_a_viewer_sees_the_editors_map_and_no_widget_value_starts_a_fit(viewer_data):
    cache = viewer_data
    before = files(cache)
    app = AppTest.from_file(str(ROOT / "pages" / "map.py"), default_timeout=120).run()
    assert not app.exception
    assert "min cluster size 40" in caption(app) and "from cache" in caption(app)
    settings = [s for s in app.slider if s.label.startswith("UMAP")]
    assert len(settings) == 2 and all(s.disabled for s in settings)  # the facets' range sliders filter, never fit
    assert app.number_input[0].disabled and app.toggle[0].disabled
    assert any("Read-only" in c.value for c in app.caption)

    # what a crafted request could send: other settings, then a click on the disabled finer-clusters button
    forged(settings[0]).set_value(40)
    forged(app.number_input[0]).set_value(12)
    forged(app.toggle[0]).set_value(True)
    app.run()
    assert not app.exception
    assert "UMAP neighbours 15" in caption(app) and "min cluster size 40" in caption(app)
    finer = next(b for b in app.button if b.label == "Show finer clusters")
    assert finer.disabled
    forged(finer).click().run()
    assert not app.exception and "min cluster size 40" in caption(app)
    assert files(cache) == before, "a viewer's request wrote cache files (a fit or a new parameter set)"

    guarded = AppTest.from_function(asks_for_other_settings, default_timeout=120).run()
    assert not guarded.exception
    assert guarded.text[0].value == "got 15 40 eom cached=True"  # the editor's map, from the cache: no fit
    assert files(cache) == before

    clusters = AppTest.from_file(str(ROOT / "pages" / "clusters.py"), default_timeout=120).run()
    assert not clusters.exception
    assert any("too coarse" in w.value for w in clusters.warning)
    assert next(b for b in clusters.button if b.label == "Show finer clusters").disabled
    assert any("stability" in c.value for c in clusters.caption)
    assert files(cache) == before


def test_without_a_cached_map_a_viewer_is_told_who_can_make_it(viewer_data, monkeypatch):
    cache = viewer_data
    for path in cache.dir.iterdir():
        path.unlink()
    app = AppTest.from_file(str(ROOT / "pages" / "map.py"), default_timeout=120).run()
    assert not app.exception
    assert any("editor" in i.value for i in app.info)
    assert not any(cache.dir.iterdir())
