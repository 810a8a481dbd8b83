import streamlit as st

import ui
from mmcore.media import AUDIO_EXTENSIONS
from mmcore.search import (Query, collection_spaces, model_spaces, prepare_text_search, search_each_modality, search_fused,
                           with_pairs)
from mmcore.spaces.registry import DEFAULT_SPACE, QUERY_KINDS, accepts

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
AUDIO_TYPES = [e.lstrip(".") for e in AUDIO_EXTENSIONS]
COLUMNS = 5
KIND_LABELS = {"text": "Text", "image": "Image", "audio": "Sound"}

ui.page("Search")
spaces = collection_spaces(ui.workspace(), ui.collection()) or [DEFAULT_SPACE]
space = ui.space() or DEFAULT_SPACE
if staged := ui.workspace().store.staged_count(ui.collection()):
    st.info(f"The search index of {staged:,} imported items is still being built in the background; a search "
            "waits until it holds them all. The map and the other pages work meanwhile.", icon=":material/hourglass_top:")

with st.expander("Filters", icon=":material/filter_list:"):
    filters = ui.filter_widgets("search")
    k = st.columns(3)[0].slider("Results per kind", 5, 100, 10, step=5)
modalities = filters.modalities

query, like_space = None, None
like = st.session_state["like"]
if like:
    like_id, like_space = like
    ui.like_banner(like_id, like_space)
    query = Query(like=like_id)
elif not set(spaces) & set(model_spaces()):
    st.info(f"This collection holds vectors of space **{ui.plain(space)}**, made without a text or image model, so it is "
            "searched by item: select items on the Map page and use *More like this*.", icon=":material/info:")
else:
    kinds = [KIND_LABELS[kind] for kind in QUERY_KINDS if any(accepts(s, kind) for s in spaces)]
    prepare_text_search(ui.workspace(), ui.collection())
    left, right = st.columns([3, 2], vertical_alignment="center")
    mode = left.segmented_control("Query by", kinds, default="Text", label_visibility="collapsed")
    fused = right.toggle("All media in one list", help="Merge the lists of every kind and space by rank "
                         "(reciprocal rank fusion); scores of different spaces are never compared.")
    if mode == "Image":
        upload = st.file_uploader("Query image", type=IMAGE_TYPES)
        if upload is not None:
            st.image(upload.getvalue(), width=160)
            query = Query(image=upload.getvalue(), image_name=upload.name)
    elif mode == "Sound":
        upload = st.file_uploader("Query sound", type=AUDIO_TYPES)
        if upload is not None:
            st.audio(upload.getvalue())
            query = Query(audio=upload.getvalue(), audio_name=upload.name)
    else:
        text = st.text_input("Describe what you are looking for", placeholder="a dog running on the beach")
        if text.strip():
            query = Query(text=text)


def grid(hits) -> None:
    for row in range(0, len(hits), COLUMNS):
        for col, (rank, hit) in zip(st.columns(COLUMNS), enumerate(hits[row : row + COLUMNS], start=row)):
            with col:
                ui.hit_card(hit, rank, query.text if query is not None else None)


if query is not None and modalities:
    models = () if query.like else tuple(s for s in query.spaces if s in spaces and s in ui.workspace().space_names())
    args = (ui.workspace(), query, ui.collection(), k, filters, like_space)
    if query.like is None and fused:
        with st.spinner("Searching…", show_time=True):
            hits = ui.guarded(lambda: with_pairs(ui.workspace(), search_fused(*args), ui.collection()), needs_model=models)
        if hits is not None:
            st.subheader("All media", divider="gray")
            if hits:
                grid(hits)
            else:
                st.caption("Nothing matches.")
    else:
        with st.spinner("Searching…", show_time=True):
            results = ui.guarded(lambda: {m: with_pairs(ui.workspace(), hits, ui.collection())
                                          for m, hits in search_each_modality(*args).items()}, needs_model=models)
        if results is not None and not results:
            st.caption("Nothing matches.")
        for modality, hits in (results or {}).items():
            st.subheader(ui.PLURAL.get(modality, modality.title()), divider="gray")
            grid(hits)
