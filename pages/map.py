import streamlit as st

import ui
from mmcore.analysis.clusters import MAX_CLUSTER_SIZE, MIN_CLUSTER_SIZE, Hdbscan
from mmcore.analysis.facets import keep_mask
from mmcore.analysis.figures import default_coloring, map_figure, selected_ids
from mmcore.analysis.frame import table_view, with_3d
from mmcore.analysis.maps import map_3d
from mmcore.analysis.projection import MAX_NEIGHBORS, MIN_NEIGHBORS, Umap
from mmcore.search import Query, search
from mmcore.spaces.registry import accepts

ui.page("Map")
space = ui.space_or_stop()
denied = ui.write_denied()  # a refit replaces the fit that everyone's map and taxonomy edits rest on

umap, hdbscan = ui.analysis_params()  # a viewer's are the cached map's, and the server ignores what the widgets send
with st.expander("Map and cluster settings", icon=":material/tune:"):
    if denied:
        st.caption(f"{denied} New settings start a fit of minutes, so viewers see the map an editor made.")
    a, b, c, d = st.columns(4)
    neighbors = a.slider("UMAP neighbours", MIN_NEIGHBORS, MAX_NEIGHBORS, umap.n_neighbors, disabled=bool(denied),
                         help="Larger values show more global structure, smaller more local detail.")
    min_dist = b.slider("UMAP min_dist", 0.0, 0.99, umap.min_dist, step=0.05, disabled=bool(denied),
                        help="How tightly points pack.")
    size = c.number_input("Min cluster size (0 = automatic)", 0, MAX_CLUSTER_SIZE, hdbscan.min_cluster_size or 0,
                          disabled=bool(denied), help=f"At least {MIN_CLUSTER_SIZE}; automatic grows with the collection.")
    fine = d.toggle("Fine clusters", hdbscan.selection == "leaf", disabled=bool(denied),
                    help="On: the smallest dense groups (HDBSCAN leaf selection). Off: HDBSCAN's broader excess-of-mass "
                         "clusters, which on embeddings often lump most items into one or two.")
    refit = st.button("Refit the map", icon=":material/refresh:", disabled=bool(denied), help=denied)
    if refit:
        ui.require_write()
    if not denied:
        umap = Umap(neighbors, min_dist, umap.seed)
        hdbscan = Hdbscan(size or None, hdbscan.min_samples, "leaf" if fine else "eom")

analysis = ui.analysis_or_stop(space, umap, hdbscan, refit=refit)
ui.finer_clusters(analysis, space)
frame = ui.analysis_table(analysis)

if analysis.stale:
    left, right = st.columns([5, 1])
    left.warning(f"{analysis.placed:,} item(s) added since this map was fitted were placed on it without refitting; "
                 "a refit may draw it differently.", icon=":material/update:")
    if right.button("Refit now", type="primary", disabled=bool(denied), help=denied):
        ui.require_write()
        ui.analysis(space, analysis.umap, analysis.requested, refit=True)
        st.rerun()

a, b = st.columns([5, 1], vertical_alignment="bottom")
searchable = accepts(space, "text")
query = a.text_input("Highlight search hits", placeholder=f"a text query ({space} space)", disabled=not searchable)
three_d = b.toggle("3D")
highlight = set()
if query.strip() and searchable:
    hits = ui.guarded(lambda: search(ui.workspace(), Query(text=query), ui.collection(), k=25, space=space),
                      needs_model=(space,))
    highlight = {h.id for h in hits or []}
if three_d:
    with st.spinner("Fitting the 3D map (once per collection version)…"):
        frame = with_3d(frame, analysis.ids, map_3d(ui.workspace(), analysis))

clusters = frame.loc[frame["cluster"] >= 0, "cluster"].nunique()  # after the taxonomy's merges and splits
noise = int((frame["cluster"] < 0).sum())
st.caption(f"{len(frame):,} items · {clusters} clusters · {noise:,} noise · "
           f"UMAP neighbours {analysis.umap.n_neighbors}, min_dist {analysis.umap.min_dist} · "
           f"min cluster size {analysis.hdbscan.min_cluster_size}, {'fine' if analysis.hdbscan.selection == 'leaf' else 'broad'} "
           f"clusters · {analysis.method}" + (" · from cache" if analysis.from_cache else ""))

map_col, side = st.columns([7, 3], gap="medium")
with side:
    filters = ui.facet_panel(frame)
kept = keep_mask(frame, filters)


def remember_selection(frame) -> None:
    """Keep the map's selection apart from the chart: a figure that changes (rings, filters) is a new chart to
    Streamlit, whose own selection starts empty. Called only when someone selects or deselects on the map."""
    event = st.session_state.get("map-chart") or {}
    st.session_state["map-selection"] = selected_ids(frame, event.get("selection", {}).get("points", []))


lassoed = [i for i in st.session_state.get("map-selection", []) if i in set(frame["id"])]
table = st.container()  # below the map, filled first: the rows picked in it are ringed on the map
with table:
    if lassoed:
        # Double-clicking the map clears a selection too, but only until the figure is redrawn (a new chart to it).
        st.button("Clear the map selection", icon=":material/deselect:", key="clear-selection",
                  on_click=lambda: st.session_state.update({"map-selection": []}))
    rows = frame[frame["id"].isin(set(lassoed))] if lassoed else frame[kept]
    picked = ui.items_table(table_view(rows), "map-table",
                            "selected on the map" if lassoed else ("kept by the filters" if filters.active else "in the map"))
with map_col:
    # theme=None: Streamlit's theme re-plots the whole figure once more in the browser (0.9 s of 3.4 at 50k points)
    figure = map_figure(frame, ui.map_color("map-chart", default_coloring(space)), highlight | set(picked), three_d,
                        shown=kept if filters.active else None, selected=lassoed)
    st.plotly_chart(figure, on_select=lambda: remember_selection(frame), selection_mode=("points", "box", "lasso"),
                    key="map-chart", config={"displaylogo": False}, theme=None)
    ui.map_hover(frame, "map-chart")

selected = picked or lassoed
if selected:
    ui.selection_panel(frame, selected, space)
else:
    st.caption("Draw a lasso or box on the map, or pick rows in the table, to see, tag and open the items.")
