import streamlit as st

import ui

ui.page("Outliers")
space = ui.space_or_stop()

analysis = ui.analysis_or_stop(space)
frame = ui.analysis_table(analysis).sort_values("outlier_score", ascending=False)

st.caption("GLOSH outlier scores: 0 sits in a dense neighbourhood, 1 is as isolated as it gets. "
           "High scores are worth a look: mislabelled, corrupt, or just unusual items.")
left, right = st.columns([3, 1])
threshold = left.slider("Show items scoring at least", 0.0, 1.0, float(round(frame["outlier_score"].quantile(0.95), 2)), 0.01)
shown = frame[frame["outlier_score"] >= threshold]
right.metric("Items at or above", f"{len(shown):,}", help=f"of {len(frame):,}")
if shown.empty:
    st.success("Nothing scores that high.", icon=":material/check_circle:")
    st.stop()

page_size = 24
pages = max(1, -(-len(shown) // page_size))
page_no = st.columns(4)[0].number_input(f"Page (of {pages})", 1, pages, 1) if pages > 1 else 1
window = shown.iloc[(page_no - 1) * page_size : page_no * page_size]
chosen = []
for start in range(0, len(window), 6):
    for col, row in zip(st.columns(6), window.iloc[start : start + 6].itertuples()):
        with col, st.container(border=True, key=f"outlier-{row.id}"):
            if not ui.picture(row.thumbnail) and row.snippet:
                ui.snippet(row.snippet)
            st.markdown(f"**{row.outlier_score:.2f}** · {ui.plain(row.cluster_name)}")
            st.caption(ui.plain(row.source))
            if st.checkbox("Select", key=f"pick-{row.id}"):
                chosen.append(row.id)

st.divider()
ids = chosen or list(window["id"])
st.caption(f"Actions apply to {'the ' + str(len(chosen)) + ' selected' if chosen else 'all ' + str(len(window)) + ' on this page'}.")
ui.tag_form(ids, space, key="tag-outliers")
denied = ui.write_denied()
with st.popover(f"Delete {len(ids)} item(s)…", icon=":material/delete:", disabled=bool(denied), help=denied):
    st.write("Removes these items from the collection (their original files stay on disk). This can't be undone.")
    if st.button("Delete for good", type="primary"):
        ui.require_write()
        if ui.guarded(lambda: ui.workspace().store.open(ui.collection(), space).delete(ids) or True, needs_model=False):
            st.toast(f"Deleted {len(ids)} item(s)", icon=":material/delete:")
            st.rerun()
