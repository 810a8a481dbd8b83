import pandas as pd
import streamlit as st

import ui
from mmcore.analysis.frame import metadata_rows
from mmcore.errors import MMError
from mmcore.media.pdf import render_page
from mmcore.search import Query, get_item, search

NEIGHBOURS = 12
SHOWN_WIDTH = 480
COLUMNS = 6

ui.page("Item")
item_id = st.query_params.get("item")
space = st.query_params.get("space") or ui.space()
if not item_id or not space:
    st.info("Open an item from the Gallery, from a selection on the Map, or from a search result.", icon=":material/info:")
    st.stop()
hit = ui.guarded(lambda: get_item(ui.workspace(), item_id, ui.collection(), space), needs_model=False)
if hit is None:
    st.stop()

st.subheader(ui.plain(hit.source), anchor=False)
st.caption(ui.plain(" · ".join(p for p in (hit.modality, hit.where, f"space {space}", hit.id) if p)))
left, right = st.columns([3, 2], gap="large")

with left:
    mime = str(hit.metadata.get("mime", ""))
    start, end = hit.locator.get("start_s"), hit.locator.get("end_s")
    shown = False
    try:
        if hit.original and start is not None and mime.startswith(("video/", "audio/")):
            shown = ui.player(hit.original, mime, start_time=int(start), end_time=int(end + 0.999) if end else None)
        elif hit.original and mime.startswith("image/"):
            small = int(hit.metadata.get("width") or 0) < SHOWN_WIDTH  # a small original is shown bigger, not tiny
            shown = ui.original_picture(hit.original, SHOWN_WIDTH if small else "content")
        elif hit.original and mime == "application/pdf" and "page" in hit.locator:
            data = ui.stored_bytes(hit.original)
            if data is not None:
                st.image(render_page(data, int(hit.locator["page"]), hit.source), width="content")
                shown = True
    except MMError as e:
        st.error(ui.plain(e), icon=":material/error:")
    if not shown:
        ui.picture(hit.thumbnail, width="content")
    if hit.document:
        st.text(hit.document)

with right:
    analysis = ui.cached_analysis(space)
    row = None
    if analysis is not None:
        frame = ui.analysis_table(analysis)
        found = frame[frame["id"] == hit.id]
        row = found.iloc[0] if len(found) else None
    if row is not None:
        a, b = st.columns([2, 1])
        a.metric("Cluster", str(row["cluster_name"]) if row["cluster"] >= 0 else "noise")
        b.metric("Outlier score", f"{row['outlier_score']:.2f}", help="GLOSH: 0 sits in a dense neighbourhood, 1 is isolated.")
    else:
        st.caption("Not on the current map yet: open the Map page to fit it.")

    denied = ui.write_denied()
    current = sorted(hit.metadata.get("tags") or [])
    tags = st.multiselect("Tags", current, default=current, accept_new_options=True, disabled=bool(denied), help=denied,
                          key=f"item-tags-{hit.id}-{','.join(current)}", placeholder="add a tag")
    if st.button("Save tags", icon=":material/sell:", disabled=bool(denied) or set(tags) == set(current), help=denied):
        ui.require_write()
        target = ui.workspace().store.open(ui.collection(), space)
        added, removed = [t for t in tags if t not in current], [t for t in current if t not in tags]
        if ui.guarded(lambda: target.update_tags([hit.id], add=added, remove=removed) or True, needs_model=False):
            ui.tags_changed()
            st.rerun()

    if st.button("More like this", icon=":material/travel_explore:", help="Search with this item's own vector."):
        st.session_state["like"] = (hit.id, space)
        st.switch_page("pages/search.py")
    pair = hit.metadata.get("pair_of")
    if isinstance(pair, str) and pair and st.button("Open its pair", icon=":material/link:"):
        ui.open_item(pair, space)

    st.dataframe(pd.DataFrame(metadata_rows(hit.metadata), columns=["field", "value"]), hide_index=True,
                 width="stretch", key="item-metadata")

st.subheader("Nearest neighbours", divider="gray", anchor=False)
neighbours = ui.guarded(lambda: search(ui.workspace(), Query(like=hit.id), ui.collection(), k=NEIGHBOURS, space=space),
                        needs_model=False)
for start in range(0, len(neighbours or []), COLUMNS):
    for col, near in zip(st.columns(COLUMNS), neighbours[start : start + COLUMNS]):
        with col, st.container(border=True, key=f"near-{near.id}"):
            if not ui.picture(near.thumbnail) and near.document:
                ui.snippet(near.document[:200])
            st.caption(ui.plain(f"{near.score:.3f} · {near.source}"))
            if st.button("Open", key=f"open-near-{near.id}", icon=":material/open_in_full:", width="stretch"):
                ui.open_item(near.id, space)
