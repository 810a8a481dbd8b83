"""The items table behind the Map, Clusters, Outliers and Collections pages is built once per server and shared by
its sessions (reading 50,000 items' metadata takes seconds), and rebuilt for every session when tags change."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mmcore.analysis.maps import analyze
from mmcore.config import Settings
from mmcore.spaces import SpaceInfo, normalize
from mmcore.workspace import Workspace


def page():
    """A page showing the table's identity and its tags; the button tags the first item."""
    import streamlit as st

    import ui
    from mmcore.analysis.maps import analyze

    ws = ui.workspace()
    table = ui.analysis_table(analyze(ws, "shared", "vecs"))
    st.text(f"table {id(table)}")
    st.text("tags=" + ",".join(sorted({t for tags in table["tags"] for t in tags})))
    if st.button("tag"):
        ws.store.open("shared", "vecs").update_tags([table["id"].iloc[0]], add=["picked"])
        ui.tags_changed()
        st.rerun()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", collection="shared")
    ws = Workspace(settings)
    rng = np.random.default_rng(0)
    vectors = normalize(np.repeat(np.eye(3, 8), 10, axis=0) + 0.05 * rng.standard_normal((30, 8)))
    target = ws.store.collection("shared", SpaceInfo("vecs", "synthetic", "", 8))
    target.add([f"i{i:02d}" for i in range(30)], vectors, [{"modality": "vector"}] * 30, [None] * 30)
    analyze(ws, "shared", "vecs")
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # the app opens the store itself
    monkeypatch.setenv("MMCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MMCORE_COLLECTION", "shared")
    import streamlit as st

    st.cache_resource.clear()  # a workspace and tables of another test's data dir
    yield settings.data_dir
    st.cache_resource.clear()


def text(app: AppTest, prefix: str) -> str:
    return next(t.value for t in app.text if t.value.startswith(prefix))


def test_sessions_share_one_table_and_a_tag_edit_rebuilds_it_for_all(data_dir):
    first, second = AppTest.from_function(page).run(timeout=60), AppTest.from_function(page).run(timeout=60)
    assert not first.exception and not second.exception
    assert text(first, "table") == text(second, "table"), "two sessions built a table each"
    assert text(second, "tags") == "tags="

    first.button[0].click().run(timeout=60)
    second.run(timeout=60)
    assert text(second, "tags") == "tags=picked", "the other session still shows the table from before the tag edit"
    assert text(first, "table") == text(second, "table")
