import hashlib

import streamlit as st

import ui
from mmcore.analysis.frame import SORTS, filter_items, sort_items
from mmcore.captions import captions_of
from mmcore.suggest import MIN_EXAMPLES, Reviews, accept, reject, suggestions, want

COLUMNS = 6
QUEUE = 12

ui.page("Gallery")
space = ui.space_or_stop()
analysis = ui.analysis_or_stop(space)
frame = ui.analysis_table(analysis)
ws = ui.workspace()
denied = ui.write_denied()


def review_suggestions() -> None:
    """The queue of tags suggested from the analyst's own tags: accept, reject, or accept all above a threshold."""
    target = ws.store.open(ui.collection(), space)
    key = (ui.collection(), space, target.versions(), Reviews(ws.settings.data_dir, ui.collection(), space).version())
    cached = st.session_state.get("suggestions")
    if cached is None or cached[0] != key:
        with st.spinner("Learning from your tags…"):
            cached = (key, ui.guarded(lambda: suggestions(ws, ui.collection(), space), needs_model=False))
        st.session_state["suggestions"] = cached
    report = cached[1]
    if report is None:
        return
    probe = "" if report.probe_accuracy is None else f" Linear probe: {report.probe_accuracy:.0%} cross-validated accuracy."
    st.caption(f"Learned from your tags (at least {MIN_EXAMPLES} items each) on the stored vectors; rejected suggestions "
               f"count as negatives next time.{probe}")
    if report.models:
        st.dataframe([{"tag": m.tag, "learned": "by name (zero-shot)" if m.source == "zero-shot" else
                       f"{m.positives} tagged, {m.negatives} negatives" + (f" ({m.background} untagged stand-ins)" if m.background else ""),
                       "accuracy": "" if m.accuracy is None else f"{m.accuracy:.0%}"} for m in report.models], hide_index=True)
    for note in report.notes:
        st.caption(ui.plain(note))
    with st.form("want-tag", border=False, clear_on_submit=True):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        name = left.text_input("Look for a tag with no examples yet (by its name)", placeholder="e.g. bicycle")
        if right.form_submit_button("Look for it", disabled=bool(denied), help=denied) and name.strip():
            ui.require_write()
            if ui.guarded(lambda: want(ws, ui.collection(), space, name) or True, needs_model=False):
                st.rerun()
    if not report.items:
        st.info("No suggestions: tag a few items of each kind (on this page's Open, a cluster's review or the Map's "
                "selection), then come back.", icon=":material/sell:")
        return
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    threshold = left.slider("Confidence at least", 0.5, 1.0, 0.9, 0.01, key="suggest-threshold")
    sure = report.above(threshold)
    if right.button(f"Accept all {len(sure):,}", icon=":material/done_all:", disabled=not sure or bool(denied), help=denied):
        decide(accept, sure)
    st.caption(f"{len(report.items):,} suggestions, most confident first")
    rows = frame.set_index("id", drop=False)
    shown = [s for s in report.items if s.id in rows.index][:QUEUE]
    for start in range(0, len(shown), COLUMNS):
        for col, s in zip(st.columns(COLUMNS), shown[start : start + COLUMNS]):
            row = rows.loc[s.id]
            with col, st.container(border=True, key=f"suggestion-{s.id}"):
                if not ui.picture(row["thumbnail"]) and row["snippet"]:
                    ui.snippet(row["snippet"])
                st.caption(ui.plain(str(row["source"])))
                by = "" if s.source == "probe" else " (by name)"
                st.markdown(ui.plain(f"{s.tag} · {int(s.confidence * 100)}%{by}"))  # floored: 0.996 is no sure 100%
                if st.button("Accept", icon=":material/check:", key=f"accept-{s.id}", disabled=bool(denied), help=denied,
                             width="stretch"):
                    decide(accept, [s])
                if st.button("Reject", icon=":material/close:", key=f"reject-{s.id}", disabled=bool(denied), help=denied,
                             width="stretch"):
                    decide(reject, [s])


def decide(action, chosen) -> None:
    ui.require_write()
    if ui.guarded(lambda: action(ws, ui.collection(), space, chosen) or True, needs_model=False):
        ui.tags_changed()
        st.rerun()


if st.toggle("Review tag suggestions", key="suggest-open", help="Tags for untagged items, learned from the items you tagged"):
    with st.container(border=True):
        review_suggestions()

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

captions = ui.guarded(lambda: captions_of(ws.store.open(ui.collection(), space), list(window["id"])), needs_model=False) or {}
for start in range(0, len(window), COLUMNS):
    for col, row in zip(st.columns(COLUMNS), window.iloc[start : start + COLUMNS].itertuples()):
        with col, st.container(border=True, key=f"card-{row.id}"):
            if not ui.picture(row.thumbnail) and row.snippet:
                ui.snippet(row.snippet)
            if caption := captions.get(row.id):  # the picture's caption, written or from a CSV
                st.markdown(ui.plain(caption))
            st.caption(ui.plain(str(row.source)))
            st.caption(ui.plain(f"{row.cluster_name} · outlier {row.outlier_score:.2f}"))
            if st.button("Open", key=f"open-{row.id}", width="stretch"):
                ui.open_item(row.id, space)
