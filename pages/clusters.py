import json

import streamlit as st

import ui
from mmcore.analysis.clusters import NOISE, stability_words
from mmcore.analysis.naming import cluster_names, save_user_labels, user_labels
from mmcore.analysis.taxonomy import export_taxonomy, load_taxonomy, save_as_tags
from mmcore.errors import MMError
from mmcore.spaces.registry import spec_of

SAMPLES = 6
PER_PAGE = 20

ui.page("Clusters")
space = ui.space_or_stop()
analysis = ui.analysis_or_stop(space)
ws = ui.workspace()
try:
    taxonomy = load_taxonomy(ws, ui.collection(), space)
    auto = cluster_names(ws, analysis)
    labels, names = taxonomy.apply(analysis, auto)
    target = ws.store.open(ui.collection(), space)
except MMError as e:
    st.error(ui.plain(e), icon=":material/error:")
    st.stop()
frame = ui.analysis_table(analysis)
denied = ui.write_denied()
ui.finer_clusters(analysis, space)


def edit(action, done: str) -> None:
    """Run one taxonomy edit, save it and redraw the page (the Map page picks it up too)."""
    ui.require_write()
    try:
        action()
        taxonomy.save()
    except MMError as e:
        st.error(ui.plain(e), icon=":material/error:")
        return
    st.session_state["clusters_notice"] = done
    st.rerun()


if notice := st.session_state.pop("clusters_notice", None):
    st.success(notice, icon=":material/check_circle:")
if not taxonomy.applies_to(analysis):
    carried = taxonomy.carried_names(analysis)
    st.warning(f"This map was refitted after the taxonomy was edited, so its merges and splits no longer apply. "
               f"{len(carried)} of {len(taxonomy.names)} names were carried over to the clusters holding most of the "
               "same items; your next edit starts the taxonomy afresh on this map, keeping them.",
               icon=":material/history:")

sizes = frame[frame["cluster"] != NOISE].groupby("cluster").size().sort_values(ascending=False, kind="stable")
noise = int((frame["cluster"] == NOISE).sum())
a, b, c, d = st.columns([1, 1, 1, 2], vertical_alignment="center")
a.metric("Clusters", len(sizes))
b.metric("Clustered items", f"{int(sizes.sum()):,}")
c.metric("Noise items", f"{noise:,}")
with d:
    if st.button("Write names to items as tags", icon=":material/sell:", disabled=bool(denied),
                 help=denied or "Each clustered item gets the tag taxon:<its cluster's name>, replacing its earlier taxon: tags."):
        ui.require_write()
        try:
            count = save_as_tags(target, analysis, labels, names)
            ui.tags_changed()
            st.success(f"Tagged {count:,} items with their cluster's name (taxon:…).", icon=":material/sell:")
        except MMError as e:
            st.error(ui.plain(e), icon=":material/error:")
    st.download_button("Download taxonomy (JSON)", json.dumps(export_taxonomy(analysis, labels, names), indent=1),
                       file_name=f"{ui.collection()}-{space}-taxonomy.json", mime="application/json",
                       icon=":material/download:")
st.caption("Rename a cluster in its box and press Enter, then Save. Review a cluster to see its items, merge others "
           "into it, split it in two or tag its items. Edits are saved with the collection and shown on the Map.")
st.caption("**Stability**: how much of a cluster comes back when the clustering is redone on random halves of the "
           "items (1 = always the same items). From 0.75 a cluster is stable; at 0.5 or below it falls apart, so "
           "review it before you trust or name it. Merged and split clusters have none.")
stabilities = frame.groupby("cluster")["cluster_stability"].first()


def samples(members) -> None:
    """The most central members (highest membership probability) as a strip of thumbnails or snippets."""
    for col, row in zip(st.columns(SAMPLES), members.head(SAMPLES).itertuples()):
        with col:
            if not ui.picture(row.thumbnail):
                ui.snippet(row.snippet[:120])


def review(label: int, members) -> None:
    others = [int(x) for x in sizes.index if x != label]
    left, middle, right = st.columns([4, 1, 1], vertical_alignment="bottom")
    merge = left.multiselect("Merge other clusters into this one", others, key=f"merge-{label}",
                             format_func=lambda x: f"{names.get(x, x)} ({sizes[x]:,})")
    if middle.button("Merge", key=f"do-merge-{label}", disabled=not merge or bool(denied), help=denied,
                     icon=":material/call_merge:"):
        edit(lambda: taxonomy.merge(analysis, merge, label), f"Merged {len(merge)} cluster(s) into '{ui.plain(names[label])}'.")
    if right.button("Split in two", key=f"split-{label}", icon=":material/call_split:", disabled=bool(denied),
                    help=denied or "Parts the cluster by k-means on its items' vectors."):
        edit(lambda: taxonomy.split(analysis, label, target, auto), f"Split '{ui.plain(names[label])}' in two.")
    ui.tag_form(list(members["id"]), space, key=f"tag-cluster-{label}")
    ui.gallery(members)


def cluster_row(label: int) -> None:
    members = frame[frame["cluster"] == label].sort_values("probability", ascending=False, kind="stable")
    with st.container(border=True, key=f"cluster-{label}"):
        left, right = st.columns([2, 5])
        with left:
            if label == NOISE:
                st.markdown("**Noise**")
                st.caption(f"{len(members):,} items in no cluster")
                opened = st.toggle("Review", key=f"review-{label}")
            else:
                current = names.get(label, f"cluster {label}")
                # the name is part of the key so a merge, split or undo elsewhere shows the new name
                name = st.text_input("Name", current, key=f"name-{label}-{current}", label_visibility="collapsed")
                stability = stabilities.get(label)
                st.caption(f"{len(members):,} items · cluster {label}"
                           + ("" if stability is None or stability != stability else f" · stability {stability:.2f}, "
                              f"{stability_words(stability)}"))
                save, toggle = st.columns(2, vertical_alignment="center")
                if save.button("Save name", key=f"save-{label}", disabled=name.strip() in ("", current) or bool(denied),
                               help=denied):
                    edit(lambda: taxonomy.rename(analysis, label, name), f"Renamed '{ui.plain(current)}' to '{ui.plain(name)}'.")
                opened = toggle.toggle("Review", key=f"review-{label}")
        with right:
            samples(members)
        if opened:
            if label == NOISE:
                ui.tag_form(list(members["id"]), space, key="tag-cluster-noise")
                ui.gallery(members)
            else:
                review(label, members)


order = [int(x) for x in sizes.index] + ([NOISE] if noise else [])
if len(order) > PER_PAGE:
    starts = range(0, len(order), PER_PAGE)
    start = st.selectbox("Clusters", starts, format_func=lambda s: f"{s + 1}–{min(s + PER_PAGE, len(order))} of {len(order)}")
    order = order[start : start + PER_PAGE]
for label in order:
    cluster_row(label)

if taxonomy.edited and st.button("Undo all edits", icon=":material/undo:", disabled=bool(denied),
                                 help=denied or "Back to the automatic clusters and names; tags already written stay."):
    edit(taxonomy.reset, "All edits undone.")

if (family := spec_of(space)) is not None and family.names_clusters:
    with st.expander("Vocabulary for naming image clusters", icon=":material/dictionary:"):
        user_file = ws.settings.data_dir / "vocabulary.txt"
        st.caption(f"Image clusters are named with the labels their {family.title} text vectors fit best, from a "
                   "built-in list of common subjects plus yours below (one per line).")
        extra = st.text_area("Your labels", ui.guarded(lambda: user_labels(user_file), needs_model=False) or "", height=140,
                             placeholder="forklift\nsolar panel\nhandwritten form")
        if st.button("Save labels and rename clusters", icon=":material/save:", disabled=bool(denied), help=denied):
            ui.require_write()
            if ui.guarded(lambda: save_user_labels(user_file, extra) or True, needs_model=False):
                st.rerun()
