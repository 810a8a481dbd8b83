"""What every page shares: the cached workspace, per-session state, the sidebar, error display, result cards.

Only getters of shared heavy objects are cached with st.cache_resource; everything per-user lives in
st.session_state, initialised here.
"""

from __future__ import annotations

import html

import streamlit as st

from mmcore.config import Settings
from mmcore.errors import MMError
from mmcore.spaces import is_loaded
from mmcore.workspace import Workspace

NEW_COLLECTION = "+ New collection…"


@st.cache_resource(show_spinner=False)
def workspace() -> Workspace:
    return Workspace(Settings.from_env())


def page(title: str) -> None:
    """Start a page: config, per-session state, the sidebar and the title.

    Pages call this themselves rather than relying on app.py, so a deep link opened before app.py has
    ever run (Streamlit then runs pages/*.py directly) still gets a working page.
    """
    st.set_page_config(page_title=f"{title} · mmscope", page_icon=":material/scatter_plot:", layout="wide")
    init_state()
    st.markdown(STYLE, unsafe_allow_html=True)
    sidebar()
    st.title(title)


def init_state() -> None:
    ws = workspace()
    st.session_state.setdefault("collection", ws.settings.collection)
    st.session_state.setdefault("upload_key", 0)
    st.session_state.setdefault("last_report", None)
    st.session_state.setdefault("like", None)


def collection() -> str:
    return st.session_state["collection"]


def collection_sizes() -> dict[str, int]:
    """Items per collection name (all spaces together); empty, with the error shown, if the store is down."""
    sizes: dict[str, int] = {}
    try:
        for info in workspace().store.list():
            sizes[info.name] = sizes.get(info.name, 0) + info.count
    except MMError as e:
        st.sidebar.error(str(e), icon=":material/error:")
    return sizes


def sidebar() -> None:
    ws = workspace()
    sizes = collection_sizes()
    current = collection()
    options = sorted(set(sizes) | {current}) + [NEW_COLLECTION]
    with st.sidebar:
        choice = st.selectbox(
            "Collection", options, index=options.index(current),
            format_func=lambda n: n if n == NEW_COLLECTION else f"{n} ({sizes.get(n, 0):,} items)",
        )
        if choice == NEW_COLLECTION:
            name = st.text_input("New collection name", placeholder="e.g. holiday-photos")
            if name:
                st.session_state["collection"] = name.strip()
                st.rerun()
        elif choice != current:
            st.session_state["collection"] = choice
            st.session_state["like"] = None
            st.rerun()
        st.divider()
        st.session_state["model_slot"] = st.empty()
        show_model_status()
        s = ws.settings
        store = f"Chroma server {s.chroma_host}:{s.chroma_port}" if s.chroma_host else f"embedded in `{s.data_dir}`"
        st.caption(f"**Store** {store}")


def show_model_status() -> None:
    settings = workspace().settings
    state = "loaded" if is_loaded("clip", settings) else "loads on first use"
    st.session_state["model_slot"].caption(f"**Model** `{settings.clip_model}` · {state}")


def guarded(action, needs_model: bool = True):
    """Run `action`, showing a spinner while the model loads and our errors as a message, not a trace."""
    ws = workspace()
    try:
        if needs_model and not is_loaded("clip", ws.settings):
            with st.spinner(f"Loading model {ws.settings.clip_model} (first use only)…"):
                ws.space()
            show_model_status()
        return action()
    except MMError as e:
        st.error(str(e), icon=":material/error:")
        return None


def hit_card(hit, rank: int) -> None:
    """One search result: thumbnail or text snippet, score, source, where in the source, and actions."""
    with st.container(border=True, key=f"hit-{hit.modality}-{rank}"):
        if hit.thumbnail:
            st.image(hit.thumbnail, width="stretch")
        elif hit.document:
            snippet = html.escape(hit.document[:400])
            st.markdown(f"<div class='mm-snippet'>{snippet}</div>", unsafe_allow_html=True)
        st.markdown(f"**{hit.score:.3f}**")
        st.caption(html.escape(hit.source) + (f" · {hit.where}" if hit.where else ""))
        if st.button("More like this", key=f"like-{rank}-{hit.id}", icon=":material/travel_explore:"):
            st.session_state["like"] = hit.id
            st.rerun()


STYLE = """
<style>
.mm-snippet { font-size: 0.85rem; line-height: 1.35; max-height: 11em; overflow: hidden;
              white-space: pre-wrap; background: #f8fafc; padding: .5em; border-radius: .4em; }
</style>
"""
