import pandas as pd
import streamlit as st

import ui
from mmcore.demo import DEMO_COLLECTION, load_digits_demo
from mmcore.errors import MMError

ui.page("Collections")
ws = ui.workspace()
denied = ui.write_denied()

infos = ui.collections()
if infos:
    rows = [{"collection": c.name, "space": c.space.space, "model": c.space.model_id, "backend": c.space.backend,
             "dimension": c.space.dim, "items": c.count} for c in infos]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
else:
    st.info("No collections yet. Upload files, or load the demo below: it needs no model download.",
            icon=":material/info:")

st.subheader("Demo", divider="gray")
st.caption("1,797 handwritten digits from scikit-learn (installed with mmscope, nothing to download), "
           "as 64-pixel vectors with their labels: try the Map, Clusters, Outliers and Duplicates pages on them.")
if st.button("Load the demo (handwritten digits, no download)", icon=":material/auto_awesome:", type="primary",
             disabled=bool(denied), help=denied):
    ui.require_write()
    try:
        with st.spinner("Loading the digits…"):
            load_digits_demo(ws)
    except MMError as e:
        st.error(ui.plain(e))
    else:
        st.session_state["collection"] = DEMO_COLLECTION
        st.session_state["space"] = "pixels"
        st.rerun()

space = ui.space()
st.subheader("How well the model fits", divider="gray")
if space is None:
    st.caption("The current collection is empty.")
else:
    st.caption(f"How well the vectors of **{ui.plain(ui.collection())}** ({ui.plain(space)}) find each image-caption "
               "pair, and tell your tags apart (nearest neighbours and a linear probe, cross-validated).")
    key = f"evaluation:{ui.collection()}:{space}"
    if st.button("Evaluate", icon=":material/analytics:", key="evaluate"):
        from mmcore.evaluate import evaluate

        with st.spinner("Measuring…"):
            st.session_state[key] = ui.guarded(lambda: evaluate(ws, ui.collection(), space), needs_model=False)
    if (report := st.session_state.get(key)) is not None:
        from mmcore.evaluate import KS

        rows = [{"figure": r.direction, **{f"recall@{k}": f"{r.recall[k]:.1%}" for k in KS}, "mean rank": f"{r.mean_rank:.1f}",
                 "rests on": f"{r.queries:,} queries, {r.targets:,} targets"} for r in report.retrieval]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True)
        sentences = [r.sentence() for r in report.retrieval] + (report.tags.sentences() if report.tags else [])
        for sentence in sentences:
            st.markdown(f"- {ui.plain(sentence)}")
        if report.tags and report.tags.left_out:
            st.caption(ui.plain("Left out (too few items): " + ", ".join(f"{t} ({n})" for t, n in report.tags.left_out.items())))
        for note in report.notes:
            st.caption(ui.plain(note))

st.subheader("Export", divider="gray")
if space is None:
    st.caption("The current collection is empty.")
else:
    st.caption(f"Items of **{ui.plain(ui.collection())}** ({ui.plain(space)}) with metadata, tags, map coordinates, clusters and "
               "outlier scores (from the Map page's last parameters).")
    fmt = st.segmented_control("Format", ["csv", "json", "parquet"], default="csv")
    if fmt and st.button("Prepare the export", icon=":material/download:"):
        from mmcore.export import export_bytes, items_frame

        analysis = ui.analysis(space, *ui.analysis_params())  # shows why when the collection can't be mapped
        # the Map's table carries the taxonomy's clusters and names, so the file matches the Clusters page
        table = ui.analysis_table(analysis) if analysis is not None else None
        try:
            data = export_bytes(items_frame(ws, ui.collection(), space, table), fmt)
        except MMError as e:
            st.error(ui.plain(e), icon=":material/error:")
        else:
            if table is None:
                st.caption("The file holds the items without map and cluster columns.")
            st.download_button(ui.plain(f"Download {ui.collection()}.{fmt}"), data, file_name=f"{ui.collection()}.{fmt}",
                               icon=":material/download:", on_click="ignore")

st.subheader("Import your own vectors", divider="gray")
st.caption("Embeddings made elsewhere (.npy, or .parquet with a `vector` column), with an optional CSV of "
           "metadata, one row per vector (`id`, `tags`, `text`, any other columns). They become a space of their "
           "own: every analysis works on them, and they are searched by item.")
with st.form("import-vectors", border=False):
    a, b = st.columns(2)
    vectors_file = a.file_uploader("Vectors", type=["npy", "parquet"], disabled=bool(denied))
    meta_file = b.file_uploader("Metadata CSV (optional)", type=["csv"], disabled=bool(denied))
    c, d = st.columns(2)
    target_name = c.text_input("Collection", value=ui.collection())
    space_name = d.text_input("Space name", value="custom")
    submitted = st.form_submit_button("Import", icon=":material/upload_file:", disabled=bool(denied), help=denied)
if submitted and vectors_file is not None:
    ui.require_write()
    import tempfile
    from pathlib import Path

    from mmcore.vectors import import_vectors

    with tempfile.TemporaryDirectory() as tmp:
        import re

        safe = re.sub(r"[^\w.-]", "_", Path(vectors_file.name).name)[-120:]  # the name identifies the space's source
        vectors_path = Path(tmp) / safe
        vectors_path.write_bytes(vectors_file.getvalue())
        meta_path = None
        if meta_file is not None:
            meta_path = Path(tmp) / "meta.csv"
            meta_path.write_bytes(meta_file.getvalue())
        try:
            with st.spinner("Importing…"):
                report = import_vectors(ws, vectors_path, meta_path, target_name.strip(), space_name.strip(),
                                        confine_images=True)
        except MMError as e:
            st.error(ui.plain(e), icon=":material/error:")
        else:
            st.success(ui.plain(f"{report.added:,} vectors added to {report.collection} ({report.space.space}, "
                                f"{report.space.dim}-d); {report.skipped:,} were already there."), icon=":material/check_circle:")
            for problem in report.problems:
                st.warning(ui.plain(problem))
            st.session_state["collection"] = report.collection
            st.session_state["space"] = report.space.space
