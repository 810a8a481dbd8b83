import json

import streamlit as st

import ui
from mmcore.analysis.naming import cluster_names
from mmcore.analysis.taxonomy import export_taxonomy, load_taxonomy, save_as_tags
from mmcore.errors import MMError

SAMPLES = 6

ui.page("Clusters")
space = ui.space_or_stop()
analysis = ui.analysis_or_stop(space)
ws = ui.workspace()
frame = ui.analysis_table(analysis)
taxonomy = load_taxonomy(ws.settings.data_dir, ui.collection(), space)
auto = cluster_names(ws, analysis)
target = ws.store.open(ui.collection(), space)

if not taxonomy.applies_to(analysis):
    st.warning("The taxonomy was edited on an earlier map that has since been refitted, so its edits no longer "
               "match these clusters. Tags already written to items (taxon:…) are kept.", icon=":material/history:")

sizes = frame[frame["cluster"] >= 0].groupby("cluster").size().sort_values(ascending=False)
names = dict(zip(frame["cluster"], frame["cluster_name"]))
a, b, c = st.columns([2, 2, 3])
a.metric("Clusters", len(sizes))
b.metric("Noise items", int((frame["cluster"] < 0).sum()))
with c:
    if st.button("Write names to items as tags", icon=":material/sell:", help="Each item gets taxon:<its cluster's name>."):
        labels, effective_names = taxonomy.apply(analysis, auto)
        count = save_as_tags(target, analysis, labels, effective_names)
        ui.tags_changed()
        st.toast(f"Tagged {count:,} items with their cluster's name", icon=":material/sell:")
    labels, effective_names = taxonomy.apply(analysis, auto)
    st.download_button("Download taxonomy (JSON)", json.dumps(export_taxonomy(analysis, labels, effective_names), indent=1),
                       file_name=f"{ui.collection()}-taxonomy.json", icon=":material/download:")


def edit(action) -> None:
    try:
        action()
        taxonomy.save()
        st.rerun()
    except MMError as e:
        st.error(str(e))


for label, size in sizes.items():
    members = frame[frame["cluster"] == label].sort_values("probability", ascending=False)
    with st.container(border=True, key=f"cluster-{label}"):
        left, right = st.columns([2, 5])
        with left:
            name = st.text_input("Name", names[label], key=f"name-{label}", label_visibility="collapsed")
            st.caption(f"{size:,} items · cluster {label}")
            save, review = st.columns(2)
            if save.button("Save name", key=f"save-{label}", disabled=name == names[label]):
                edit(lambda label=label, name=name: taxonomy.rename(analysis, label, name))
            open_it = review.toggle("Review", key=f"review-{label}")
        with right:
            for col, row in zip(st.columns(SAMPLES), members.head(SAMPLES).itertuples()):
                with col:
                    if row.thumbnail:
                        st.image(row.thumbnail, width="stretch")
                    else:
                        ui.snippet(row.snippet)
        if open_it:
            others = [int(x) for x in sizes.index if x != label]
            m1, m2, m3 = st.columns([3, 1, 1])
            merge = m1.multiselect("Merge into this cluster", others, format_func=lambda x: f"{x}: {names[x]}",
                                   key=f"merge-{label}")
            if m2.button("Merge", key=f"do-merge-{label}", disabled=not merge):
                edit(lambda label=label, merge=merge: taxonomy.merge(analysis, merge, label))
            if m3.button("Split in two", key=f"split-{label}"):
                def split(label=label):
                    items = target.all(with_vectors=True)
                    taxonomy.split(analysis, label, dict(zip(items.ids, items.vectors)), auto)
                edit(split)
            ui.tag_form(list(members["id"]), space, key=f"tag-cluster-{label}")
            ui.gallery(members)

if taxonomy.edited and st.button("Undo all edits", icon=":material/undo:"):
    taxonomy.reset()
    taxonomy.save()
    st.rerun()

if space == "clip":
    with st.expander("Vocabulary for naming image clusters", icon=":material/dictionary:"):
        user_file = ws.settings.data_dir / "vocabulary.txt"
        st.caption("Image clusters are named with the labels their CLIP text vectors fit best, from a built-in list "
                   "of common subjects plus yours below (one per line).")
        extra = st.text_area("Your labels", user_file.read_text() if user_file.exists() else "", height=140,
                             placeholder="forklift\nsolar panel\nhandwritten form")
        if st.button("Save labels and rename clusters", icon=":material/save:"):
            user_file.parent.mkdir(parents=True, exist_ok=True)
            user_file.write_text(extra.strip() + "\n")
            st.rerun()
