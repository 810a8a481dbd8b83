import streamlit as st

import ui
from mmcore.analysis.duplicates import MAX_THRESHOLD, MIN_THRESHOLD, Thresholds, dismiss, keep_one, review_queue
from mmcore.errors import MMError
from mmcore.files import stored_path

SETS_PER_PAGE = 5
COLUMNS = 5
MEMBERS_SHOWN = 10  # a long chain of near-duplicates is a hint to raise the threshold, not to scroll
DONE = "duplicates-done"  # what the last review did, shown after the rerun it triggers

ui.page("Duplicates")
space = ui.space_or_stop()

calibrated = Thresholds.for_space(space)  # each model family's cosines live on their own scale
with st.expander("Thresholds (cosine similarity)", icon=":material/tune:"):
    a, b, c = st.columns(3)
    thresholds = Thresholds(  # keyed by space: another space's sliders start from its own calibration
        image_image=a.slider("Image–image", MIN_THRESHOLD, MAX_THRESHOLD, calibrated.image_image, 0.01, key=f"dup-ii-{space}"),
        text_text=b.slider("Text–text", MIN_THRESHOLD, MAX_THRESHOLD, calibrated.text_text, 0.01, key=f"dup-tt-{space}"),
        image_text=c.slider("Image–text", MIN_THRESHOLD, MAX_THRESHOLD, calibrated.image_text, 0.01, key=f"dup-it-{space}",
                            help="A text and an image of the same thing score far lower than two copies of an image."),
        default=calibrated.default,
    )

if done := st.session_state.pop(DONE, None):
    st.success(done, icon=":material/check_circle:")
ws = ui.workspace()


def find():
    target = ws.store.open(ui.collection(), space)
    with st.spinner("Looking for near-duplicates…"):
        return target, review_queue(ws, target, thresholds)


found = ui.guarded(find, needs_model=False)
if found is None:
    st.stop()
target, queue = found
if not queue:
    st.success("No near-duplicates left to review at these thresholds.", icon=":material/check_circle:")
    st.stop()

st.markdown(f"**{len(queue):,} {'set' if len(queue) == 1 else 'sets'} to review**")
st.caption("Keeping one tags the others `duplicate` and `duplicate-of:<kept id>`, or deletes them from the collection "
           "(their files stay on disk). *Not duplicates* stops suggesting those items together.")
pages = -(-len(queue) // SETS_PER_PAGE)
page_no = st.columns(4)[0].number_input(f"Page (of {pages})", 1, pages, 1) if pages > 1 else 1


def review(action, message: str, tags_changed: bool = False) -> None:
    ui.require_write()
    try:
        action()
    except MMError as e:
        st.error(ui.plain(e), icon=":material/error:")
        return
    if tags_changed:
        ui.tags_changed()
    st.session_state[DONE] = message
    st.rerun()


def member(item: dict, score: float, suggested: bool) -> None:
    meta, document = item["metadata"], item["document"]
    if not ui.picture(stored_path(ws.files.root, meta.get("thumbnail"))) and document:
        ui.snippet(document[:300])
    where = f"chars {meta['char_start']:,}–{meta['char_end']:,}" if "char_start" in meta else ""
    st.caption(" · ".join(x for x in (f"**{score:.3f}**", ui.plain(meta.get("source") or item["id"]), where) if x))
    if suggested:
        st.badge("suggested keeper", icon=":material/star:", color="green")


def show(number: int, dup) -> None:
    shown = dup.ids[:MEMBERS_SHOWN]
    items = {item["id"]: item for item in target.get(list(shown))}

    def name(id_: str) -> str:
        return str(items[id_]["metadata"].get("source") or id_)

    with st.container(border=True, key=f"dupset-{number}"):
        st.markdown(f"**Set {number} of {len(queue)}** · {len(dup.ids)} items · {ui.plain(' + '.join(dup.modalities) or 'no modality')}"
                    f" · similarity up to {dup.max_score:.3f}")
        for start in range(0, len(shown), COLUMNS):
            for col, id_ in zip(st.columns(COLUMNS), shown[start : start + COLUMNS]):
                with col:
                    member(items[id_], dup.best_score(id_), suggested=id_ == dup.ids[0])
        if len(dup.ids) > len(shown):
            st.caption(f"… and {len(dup.ids) - len(shown):,} more in this set: raise the thresholds to split it.")
        keep = st.radio("Keep", shown, horizontal=True, key=f"keep-{dup.key}",
                        format_func=lambda id_: ui.plain(f"{dup.ids.index(id_) + 1} · {name(id_)}"))
        which = "first" if keep == dup.ids[0] else "selected"
        rest = len(dup.ids) - 1
        buttons = st.container(horizontal=True)
        if buttons.button(f"Keep {which}, tag the rest", key=f"tag-{dup.key}", icon=":material/sell:", type="primary",
                          disabled=bool(denied), help=denied):
            review(lambda: keep_one(target, dup, keep, "tag"),
                   f"Kept {ui.plain(name(keep))}; tagged {rest} other item(s) `duplicate`.", tags_changed=True)
        with buttons.popover(f"Keep {which}, delete the rest", icon=":material/delete:", disabled=bool(denied), help=denied):
            st.markdown(f"Removes {rest} item(s) from the collection, keeping {ui.plain(name(keep))}. Their original "
                        "files stay on disk. This can't be undone.")
            if st.button("Delete for good", key=f"delete-{dup.key}", type="primary"):
                review(lambda: keep_one(target, dup, keep, "delete"), f"Kept {ui.plain(name(keep))}; deleted {rest} other item(s).")
        if buttons.button("Not duplicates", key=f"dismiss-{dup.key}", icon=":material/close:", disabled=bool(denied), help=denied):
            review(lambda: dismiss(ws, target, dup), f"{len(dup.ids)} items won't be suggested as duplicates of one another again.")


denied = ui.write_denied()
first = (page_no - 1) * SETS_PER_PAGE
for number, dup in enumerate(queue[first : first + SETS_PER_PAGE], start=first + 1):
    ui.guarded(lambda: show(number, dup), needs_model=False)
