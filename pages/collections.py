import pandas as pd
import streamlit as st

import ui
from mmcore.demo import DEMO_COLLECTION, load_digits_demo
from mmcore.errors import MMError

ui.page("Collections")
ws = ui.workspace()

infos = ui.collections()
if infos:
    rows = [{"collection": c.name, "space": c.space.space, "model": c.space.model_id, "dimension": c.space.dim,
             "items": c.count} for c in infos]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
else:
    st.info("No collections yet. Upload files, or load the demo below: it needs no model download.",
            icon=":material/info:")

st.subheader("Demo", divider="gray")
st.caption("1,797 handwritten digits from scikit-learn (installed with mmscope, nothing to download), "
           "as 64-pixel vectors with their labels: try the Map, Clusters, Outliers and Duplicates pages on them.")
if st.button("Load the demo", icon=":material/auto_awesome:", type="primary"):
    try:
        with st.spinner("Loading the digits…"):
            load_digits_demo(ws)
    except MMError as e:
        st.error(str(e))
    else:
        st.session_state["collection"] = DEMO_COLLECTION
        st.session_state["space"] = "pixels"
        st.rerun()

st.subheader("Export", divider="gray")
space = ui.space()
if space is None:
    st.caption("The current collection is empty.")
else:
    st.caption(f"Items of **{ui.collection()}** ({space}) with metadata, tags, map coordinates, clusters and "
               "outlier scores (from the Map page's last parameters).")
    fmt = st.segmented_control("Format", ["csv", "json", "parquet"], default="csv")
    if fmt and st.button("Prepare the export", icon=":material/download:"):
        analysis = ui.analysis(space, *ui.analysis_params())
        if analysis is not None:
            from mmcore.export import export_bytes

            frame = ui.analysis_table(analysis)
            st.download_button(f"Download {ui.collection()}.{fmt}", export_bytes(frame, fmt),
                               file_name=f"{ui.collection()}.{fmt}", icon=":material/download:")
