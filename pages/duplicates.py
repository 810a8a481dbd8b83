import streamlit as st

import ui
from mmcore.analysis.duplicates import MAX_THRESHOLD, MIN_THRESHOLD, Reviews, Thresholds, keep_one, review_queue
from mmcore.errors import MMError

SHOWN = 5

ui.page("Duplicates")
space = ui.space()
if space is None:
    st.info("This collection is empty: add files on the Upload page, or load the demo on the Collections page.")
    st.stop()

with st.expander("Thresholds (cosine similarity)", icon=":material/tune:"):
    a, b, c = st.columns(3)
    defaults = Thresholds()
    thresholds = Thresholds(
        image_image=a.slider("Image–image", MIN_THRESHOLD, MAX_THRESHOLD, defaults.image_image, 0.01),
        text_text=b.slider("Text–text", MIN_THRESHOLD, MAX_THRESHOLD, defaults.text_text, 0.01),
        image_text=c.slider("Image–text", MIN_THRESHOLD, MAX_THRESHOLD, defaults.image_text, 0.01,
                            help="Text and images of the same thing score far lower than two copies of an image."),
        default=defaults.default,
    )

ws = ui.workspace()
target = ws.store.open(ui.collection(), space)
reviews = Reviews(ws.settings.data_dir, ui.collection(), space)
with st.spinner("Looking for near-duplicates…"):
    queue = review_queue(target, reviews, thresholds)
if not queue:
    st.success("No near-duplicates left to review at these thresholds.", icon=":material/check_circle:")
    st.stop()
st.caption(f"**{len(queue)}** set(s) to review. Keeping one tags the rest `duplicate` (or deletes them); "
           "*Not duplicates* hides the set for good.")

for n, dup in enumerate(queue[:SHOWN]):
    members = {item["id"]: item for item in target.get(dup.ids)}
    with st.container(border=True, key=f"dupset-{n}"):
        st.markdown(f"**Similarity {dup.max_score:.3f}** · {len(dup.ids)} items · {' / '.join(dup.modalities)}")
        for col, id_ in zip(st.columns(max(len(dup.ids), 4)), dup.ids):
            meta, document = members[id_]["metadata"], members[id_]["document"]
            with col:
                if meta.get("thumbnail"):
                    st.image(str(ws.files.root / meta["thumbnail"]), width="stretch")
                elif document:
                    ui.snippet(document[:300])
                st.caption(str(meta.get("source", id_)))
        keeper = st.radio("Keep", dup.ids, key=f"keep-{dup.key}", horizontal=True,
                          format_func=lambda i, m=members: str(m[i]["metadata"].get("source", i)))
        left, middle, right, _ = st.columns([2, 2, 2, 3])
        try:
            if left.button("Keep, tag the rest", key=f"tag-{dup.key}", icon=":material/sell:", type="primary"):
                keep_one(target, dup, keeper, "tag")
                st.rerun()
            if middle.button("Keep, delete the rest", key=f"del-{dup.key}", icon=":material/delete:"):
                keep_one(target, dup, keeper, "delete")
                st.rerun()
            if right.button("Not duplicates", key=f"dismiss-{dup.key}", icon=":material/close:"):
                reviews.dismiss(dup)
                st.rerun()
        except MMError as e:
            st.error(str(e))
if len(queue) > SHOWN:
    st.caption(f"{len(queue) - SHOWN} more set(s) after these.")
