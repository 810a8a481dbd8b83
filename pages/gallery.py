import hashlib

import streamlit as st

import ui
from mmcore.analysis.frame import SORTS, filter_items, sort_items

COLUMNS = 6

ui.page("Gallery")
space = ui.space_or_stop()
analysis = ui.analysis_or_stop(space)
frame = ui.analysis_table(analysis)

with st.expander("Filters", icon=":material/filter_list:"):
    filters = ui.filter_widgets("gallery")
a, b, c = st.columns(3, vertical_alignment="bottom")
how = a.selectbox("Sort by", list(SORTS), key="gallery-sort")
per_page = b.selectbox("Per page", [24, 48, 96], index=1, key="gallery-per-page")
items = sort_items(filter_items(frame, filters), how)
pages = max(1, -(-len(items) // per_page))
# A new filter, order or page size starts again at page 1.
view = hashlib.sha1(repr((filters, how, per_page)).encode()).hexdigest()[:8]
page_no = c.number_input(f"Page (of {pages:,})", 1, pages, 1, key=f"gallery-page-{view}")
window = items.iloc[(page_no - 1) * per_page : page_no * per_page]
st.caption(f"{len(items):,} of {len(frame):,} items · page {page_no:,} of {pages:,}")
if items.empty:
    st.info("No item meets these filters.", icon=":material/filter_list_off:")
    st.stop()

for start in range(0, len(window), COLUMNS):
    for col, row in zip(st.columns(COLUMNS), window.iloc[start : start + COLUMNS].itertuples()):
        with col, st.container(border=True, key=f"card-{row.id}"):
            if not ui.picture(row.thumbnail) and row.snippet:
                ui.snippet(row.snippet)
            st.caption(ui.plain(str(row.source)))
            st.caption(ui.plain(f"{row.cluster_name} · outlier {row.outlier_score:.2f}"))
            if st.button("Open", key=f"open-{row.id}", width="stretch"):
                ui.open_item(row.id, space)
