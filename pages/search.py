import streamlit as st

import ui
from mmcore.search import MODALITIES, Filters, Query, search_each_modality

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
COLUMNS = 5

ui.page("Search")
space = ui.space() or "clip"

with st.expander("Filters", icon=":material/filter_list:"):
    a, b, c = st.columns(3)
    modalities = a.multiselect("Show", MODALITIES, default=list(MODALITIES), format_func=lambda m: m.title() + "s")
    tags = b.text_input("Has all tags (comma-separated)")
    sources = c.text_input("Source file names (comma-separated, exact)")
    d, e = st.columns([2, 1])
    dates = d.date_input("Added between", value=(), format="YYYY-MM-DD")
    k = e.slider("Results per kind", 5, 100, 10, step=5)


def split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


filters = Filters(
    modalities=tuple(modalities),
    tags=split(tags),
    sources=split(sources),
    added_from=dates[0] if len(dates) > 0 else None,
    added_to=dates[1] if len(dates) > 1 else None,
)

query = None
like = st.session_state["like"]
if like:
    left, right = st.columns([5, 1])
    left.info(f"More like item `{like}`", icon=":material/travel_explore:")
    if right.button("Clear", icon=":material/close:"):
        st.session_state["like"] = None
        st.rerun()
    query = Query(like=like)
elif space != "clip":
    st.info(f"This collection holds vectors of space **{space}**, made without a text or image model, so it is "
            "searched by item: select items on the Map page and use *More like this*.", icon=":material/info:")
else:
    mode = st.segmented_control("Query by", ["Text", "Image"], default="Text", label_visibility="collapsed")
    if mode == "Image":
        upload = st.file_uploader("Query image", type=IMAGE_TYPES)
        if upload is not None:
            st.image(upload.getvalue(), width=160)
            query = Query(image=upload.getvalue(), image_name=upload.name)
    else:
        text = st.text_input("Describe what you are looking for", placeholder="a dog running on the beach")
        if text.strip():
            query = Query(text=text)

if query is not None and modalities:
    results = ui.guarded(
        lambda: search_each_modality(ui.workspace(), query, ui.collection(), k, filters, space), needs_model=not query.like
    )
    for modality, hits in (results or {}).items():
        st.subheader(f"{modality.title()}s", divider="gray")
        if not hits:
            st.caption("Nothing matches.")
        for row in range(0, len(hits), COLUMNS):
            for col, (rank, hit) in zip(st.columns(COLUMNS), enumerate(hits[row : row + COLUMNS], start=row)):
                with col:
                    ui.hit_card(hit, rank)
