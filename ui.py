"""What every page shares: the cached workspace, per-session state, the sidebar, error display, result cards.

Only getters of shared heavy objects are cached with st.cache_resource; everything per-user lives in
st.session_state, initialised here, or in st.user (who is logged in).
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from mmcore.access import Access, verified_email
from mmcore.captions import is_loaded as captions_loaded
from mmcore.captions import load_failure as captions_failure
from mmcore.config import Settings
from mmcore.errors import MMError
from mmcore.files import read_stored, read_thumbnail
from mmcore.plaintext import WORD_JOINER
from mmcore.plaintext import markdown as plain  # every user string put into Markdown goes through this
from mmcore.spaces import backend_of, is_loaded, load_failure
from mmcore.spaces.registry import DEFAULT_SPACE, names, notices, require, specs
from mmcore.speech import is_loaded as speech_loaded
from mmcore.speech import load_failure as speech_failure
from mmcore.workspace import Workspace

NEW_COLLECTION = "+ New collection…"
# The tab icon, served by the app itself: a Material icon as favicon would be fetched from fonts.gstatic.com.
FAVICON = str(Path(__file__).parent / "assets" / "favicon.png")


@st.cache_resource(show_spinner=False)
def workspace() -> Workspace:
    return Workspace(Settings.from_env())


def page(title: str) -> None:
    """Start a page: config, per-session state, the sidebar and the title.

    Pages call this themselves rather than relying on app.py, so a deep link opened before app.py has
    ever run (Streamlit then runs pages/*.py directly) still gets a working page.
    """
    _leave_v1_navigation()
    st.set_page_config(page_title=f"{title} · mmscope", page_icon=FAVICON, layout="wide")
    init_state()
    st.markdown(STYLE, unsafe_allow_html=True)
    require_login()
    sidebar()
    st.title(title)


def _leave_v1_navigation() -> None:
    """A deep link opened before app.py ever ran makes Streamlit run pages/*.py directly, with file-name
    navigation. Switch to app.py's st.navigation once; if Streamlit's internals move, the page still works."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def init_state() -> None:
    ws = workspace()
    st.session_state.setdefault("collection", ws.settings.collection)
    st.session_state.setdefault("upload_key", 0)
    st.session_state.setdefault("last_report", None)
    st.session_state.setdefault("like", None)  # (item id, its space) for "more like this"
    st.session_state.setdefault("playing", None)  # the search hit whose player is open


def collection() -> str:
    return st.session_state["collection"]


def collections() -> list:
    """Every (collection, space) in the store; empty, with the error shown, if the store is down."""
    try:
        return workspace().store.list()
    except MMError as e:
        st.sidebar.error(plain(e), icon=":material/error:")
        return []


def collection_sizes() -> dict[str, int]:
    """Items per collection name, all its spaces together."""
    sizes: dict[str, int] = {}
    for info in collections():
        sizes[info.name] = sizes.get(info.name, 0) + info.count
    return sizes


def collection_space_names() -> list[str]:
    """The spaces of the current collection: those of model families in registry order, then imported ones."""
    order = {name: i for i, name in enumerate(names())}
    return sorted((info.space.space for info in collections() if info.name == collection()),
                  key=lambda s: (order.get(s, len(order)), s))


def space() -> str | None:
    """The space to explore in the current collection: the one picked in the sidebar, else its first one."""
    spaces = collection_space_names()
    picked = st.session_state.get("space")
    return picked if picked in spaces else (spaces[0] if spaces else None)


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
        spaces = collection_space_names()
        if len(spaces) > 1:  # the index keeps the choice across pages, where the widget is a new one
            st.session_state["space"] = st.selectbox("Space", spaces, index=spaces.index(space()),
                                                     help="Maps and clusters never mix spaces.")
        st.divider()
        st.session_state["model_slot"] = st.empty()
        show_model_status()
        for notice in notices(ws.settings):  # media that leaves this machine, a licence's terms: said plainly
            st.warning(plain(notice), icon=":material/info:")
        s = ws.settings
        store = f"Chroma server {s.chroma_host}:{s.chroma_port}" if s.chroma_host else f"embedded in `{s.data_dir}`"
        st.caption(f"**Store** {store}")
        access_panel()


def login_configured() -> bool:
    """Login is on when the secrets have an [auth] section (Streamlit's OIDC settings)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:
        # No secrets file means no login; an unreadable one must not silently open the app.
        if any(Path(p).exists() for p in st.get_option("secrets.files")):
            st.error("The secrets file can't be read, so login can't be checked; see the server log.", icon=":material/lock:")
            st.stop()
        return False


def user_email() -> str | None:
    """The logged-in user's verified email; None when login is off, nobody is logged in, or it is unverified."""
    if not login_configured() or not st.user.is_logged_in:
        return None
    return verified_email(st.user.to_dict())


def access() -> Access:
    return Access.of(login_configured(), workspace().settings.editors)


def write_denied() -> str | None:
    """Why this session may not change anything (a tooltip for disabled controls), or None when it may."""
    return access().why_not(user_email())


def require_write() -> None:
    """Check before every change, server-side: a disabled widget alone does not stop a crafted request."""
    if reason := write_denied():
        st.error(reason, icon=":material/lock:")
        st.stop()


def require_login() -> None:
    """With login configured, a page shows nothing but a login button until someone logs in."""
    if not login_configured() or st.user.is_logged_in:
        return
    st.title("mmscope")
    st.info("Log in to explore the collections.", icon=":material/lock:")
    st.button("Log in", type="primary", icon=":material/login:", on_click=st.login)
    st.stop()


def access_panel() -> None:
    """Who is logged in and what they may do, or the open-access note."""
    email = user_email()
    if login_configured() and st.user.is_logged_in and email is None:
        st.caption(plain(f"Signed in as {st.user.get('name') or 'a user without a verified email'}."))
    st.caption(plain(access().describe(email)))
    if login_configured() and st.user.is_logged_in:
        st.button("Log out", icon=":material/logout:", on_click=st.logout, key="logout")


def show_model_status() -> None:
    settings = workspace().settings
    lines = []
    for spec in specs():
        model = settings.model_for(spec.name)
        if not model:  # an optional family left off says nothing until it is configured
            continue
        state = load_state(is_loaded(spec.name, settings), load_failure(spec.name, settings))
        backend = backend_of(spec.name, settings)
        shown = f" · {backend}" if backend != "torch" else ""
        lines.append(f"**{plain(spec.title)}** `{model}`{shown} · {state}")
    if settings.asr_model:
        state = load_state(speech_loaded(settings), speech_failure(settings))
        lines.append(f"**Speech** `{settings.asr_model}` · {state}")
    else:
        lines.append("**Speech** off (set MMCORE_ASR_MODEL)")
    if settings.caption_model:
        state = load_state(captions_loaded(settings), captions_failure(settings))
        lines.append(f"**Captions** `{settings.caption_model}` · {state}")
    st.session_state["model_slot"].caption("  \n".join(lines))


def load_state(loaded: bool, failure: str | None) -> str:
    """A model's state for the sidebar (markdown): loaded, failed to load (with the reason), or not yet tried."""
    if loaded:
        return "loaded"
    if not failure:
        return "loads on first use"
    first_sentence = failure.split(". ")[0].rstrip(".")  # the rest (how to fix it) shows where the model was needed
    return f":red[**failed to load**]: {plain(first_sentence)}."


def guarded(action, needs_model: bool | tuple[str, ...] = True):
    """Run `action`, showing a spinner while models load and our errors as a message, not a trace.

    `needs_model`: the spaces whose models `action` uses (True: the default space), loaded first under a spinner.
    """
    ws = workspace()
    spaces = (DEFAULT_SPACE,) if needs_model is True else needs_model or ()
    try:
        for space in spaces:
            if not is_loaded(space, ws.settings):
                with st.spinner(f"Loading model {ws.settings.model_for(space) or require(space).title} (first use only)…"):
                    ws.space(space)
                show_model_status()
        return action()
    except MMError as e:
        st.error(plain(e), icon=":material/error:")  # our messages quote file names, tags, cluster names
        return None


def picture(path: str | None, width: int | str = "stretch") -> bool:
    """Show the stored thumbnail at `path`; False, showing nothing, when there is none to show.

    Every page shows stored media through here and `player`: the bytes are read by `mmcore.files`, bounded and
    only from a regular file inside the media folder, never by handing Streamlit a path (it reads one whole,
    whatever it is: a FIFO, a link to /dev/zero in a copied data dir)."""
    data = read_thumbnail(workspace().files.root, path)
    if data is not None:
        st.image(data, width=width)
    return data is not None


def original_picture(path: str | None, width: int | str) -> bool:
    """Show a stored original image (see `picture`) of at most MMCORE_MAX_FILE_MB and MMCORE_MAX_IMAGE_PIXELS;
    False, showing nothing, when it can't be."""
    from mmcore.files import read_image

    ws = workspace()
    data = read_image(ws.files.root, path, ws.settings.max_file_bytes, ws.settings.max_image_pixels,
                      ws.settings.max_image_pixels)
    if data is not None:
        st.image(data, width=width)
    return data is not None


def stored_bytes(path: str | None) -> bytes | None:
    """A stored original's bytes (bounded as `player`'s), or None when there is none to read."""
    ws = workspace()
    return read_stored(ws.files.root, path, ws.settings.max_file_bytes)


def player(path: str | None, mime: str, **options) -> bool:
    """Play the stored original video or sound at `path` (see `picture`); False, showing nothing, when it can't be."""
    data = stored_bytes(path)
    if data is not None:
        (st.video if mime.startswith("video/") else st.audio)(data, format=mime, **options)
    return data is not None


def snippet(text: str) -> None:
    """A text item's words (a window, a page, a CSV cell, a transcript) in a small box (STYLE), as text:
    st.text parses neither Markdown nor HTML."""
    st.text(text, width="stretch")


PLURAL = {"image": "Images", "text": "Texts", "page": "Document pages", "video": "Video segments", "audio": "Audio"}


def filter_widgets(key: str):
    """The Search page's filters (kinds of media, tags, source names, dates added), for any page listing items;
    `key` keeps each page's choices apart. Returns mmcore.search.Filters."""
    from mmcore.search import MODALITIES, Filters

    a, b, c = st.columns(3)
    modalities = a.multiselect("Show", MODALITIES, default=list(MODALITIES), format_func=PLURAL.get, key=f"{key}-kinds")
    tags = b.text_input("Has all tags (comma-separated)", key=f"{key}-tags")
    sources = c.text_input("Source file names (comma-separated, exact)", key=f"{key}-sources")
    dates = st.columns([2, 1])[0].date_input("Added between", value=(), format="YYYY-MM-DD", key=f"{key}-dates")

    def split(text: str) -> tuple[str, ...]:
        text = text.replace(WORD_JOINER, "")  # pasted from a caption of this app (ui.plain)
        return tuple(x.strip() for x in text.split(",") if x.strip())

    return Filters(modalities=tuple(modalities), tags=split(tags), sources=split(sources),
                   added_from=dates[0] if len(dates) > 0 else None, added_to=dates[1] if len(dates) > 1 else None)


def open_item(item_id: str, space: str) -> None:
    """Go to the item view of one item."""
    st.switch_page("pages/item.py", query_params={"item": item_id, "space": space})


def hit_card(hit, rank: int, query_text: str | None = None) -> None:
    """One search result: thumbnail or text snippet, score and space, source, where in the source, and actions.

    Video segments and audio windows play from their start, one player at a time (players load the file). A page a
    late-interaction space found for `query_text` can show where on it the query matched."""
    with st.container(border=True, key=f"hit-{hit.modality}-{rank}"):
        playing = st.session_state.get("playing") == hit.id
        # image-caption pairs (mmcore.search.with_pairs): a caption shows its image, an image its captions
        image_of = next((p for p in hit.pairs if p.thumbnail), None) if hit.modality == "text" else None
        captions = [p for p in hit.pairs if p.document] if hit.modality == "image" else []
        mime = str(hit.metadata.get("mime", ""))
        playable = bool(hit.original) and "start_s" in hit.locator and mime.startswith(("video/", "audio/"))  # transcripts too
        start, end = hit.locator.get("start_s", 0), hit.locator.get("end_s")
        shown = playing and playable and player(hit.original, mime, start_time=int(start),
                                                end_time=int(end + 0.999) if end else None, autoplay=True)
        pictured = not shown and picture(hit.thumbnail or (image_of.thumbnail if image_of else None))
        if not shown and hit.document and (image_of or not pictured):  # a text, or a caption beneath its image
            snippet(hit.document[:400])
        if captions:
            snippet("\n".join(f"“{c.document[:200]}”" for c in captions))  # an image's captions beneath it
        score = f"**{hit.score:.3f}**" + (f" · p {hit.probability:.2f}" if hit.probability is not None else "")
        score += f" · fused {hit.fused:.4f}" if hit.fused is not None else ""
        found = " + ".join(f"`{space}`" for space in hit.found_in or (hit.space,))  # the spaces whose lists had it
        st.markdown(f"{score} · {found}")  # space names are letters, digits, - and _ (checked when made)
        st.caption(plain(" · ".join(p for p in (hit.source, hit.where, f"image {image_of.source}" if image_of else "") if p)))
        with st.container(horizontal=True, gap="small"):
            if playable:
                if st.button("Stop" if playing else "Play", key=f"play-{rank}-{hit.id}",
                             icon=":material/stop:" if playing else ":material/play_arrow:"):
                    st.session_state["playing"] = None if playing else hit.id
                    st.rerun()
            if st.button("More like this", key=f"like-{rank}-{hit.id}", icon=":material/travel_explore:"):
                st.session_state["like"] = (hit.id, hit.space)
                st.rerun()
            if st.button("Open", key=f"open-{rank}-{hit.id}", icon=":material/open_in_full:"):
                open_item(hit.id, hit.space)
        late = next((s for s in hit.found_in or (hit.space,) if is_multivector(s)), None)
        if query_text and late and st.toggle("Why this page", key=f"why-{rank}-{hit.id}",
                                             help="Where on the page the query's words matched (late interaction)"):
            why_this_page(hit.id, late, query_text)


def is_multivector(space: str) -> bool:
    from mmcore.spaces.registry import spec_of

    spec = spec_of(space)
    return bool(spec and spec.multivector)


def why_this_page(item_id: str, space: str, text: str) -> None:
    """The page with a heat map of where the query's tokens matched it best."""
    from mmcore.maxsim import heat_map, match_map

    match = guarded(lambda: match_map(workspace(), collection(), text, item_id, space), needs_model=(space,))
    if match is not None:
        st.image(heat_map(match), caption=f"late-interaction score {match.score:.3f} · red: where the query matched",
                 width="stretch")


def like_banner(item_id: str, space: str) -> None:
    """What a "more like this" search started from: the item's thumbnail (or text), source and place, and a
    button that clears it."""
    from mmcore.search import get_item

    with st.container(border=True, horizontal=True, vertical_alignment="center", key="like-banner"):
        hit = guarded(lambda: get_item(workspace(), item_id, collection(), space), needs_model=False)
        if hit is not None:
            picture(hit.thumbnail, width=72)
        with st.container():
            st.markdown(":material/travel_explore: **More like this item**")
            if hit is not None:
                st.caption(plain(" · ".join(p for p in (hit.source, hit.where, f"space {space}") if p)))
                if hit.document and not hit.thumbnail:
                    snippet(hit.document[:200])
        if st.button("Clear", icon=":material/close:", key="like-clear"):
            st.session_state["like"] = None
            st.rerun()


STYLE = """
<style>
[class*="st-key-uploader-"] [data-testid="stFileUploaderDropzoneInstructions"] { display: none; }
/* st.text in a page is an item's text (ui.snippet); it centres its text, so a long one would lose its start */
[data-testid="stMain"] [data-testid="stText"] { display: block; font-size: 0.85rem; line-height: 1.35; max-height: 11em;
              overflow: hidden; background: #f8fafc; padding: .5em; border-radius: .4em; }
</style>
"""


EMPTY = "This collection is empty: add files on the Upload page, or load the demo on the Collections page."


def space_or_stop() -> str:
    """The space to explore, or an explanation and the end of the page when the collection is empty."""
    current = space()
    if current is None:
        st.info(EMPTY, icon=":material/info:")
        st.stop()
    return current


def analysis_or_stop(space: str, umap=None, hdbscan=None, refit: bool = False):
    """The analysis (with the Map page's last parameters unless given); errors are shown and end the page."""
    if umap is None or hdbscan is None:
        umap, hdbscan = analysis_params()
    result = analysis(space, umap, hdbscan, refit)
    if result is None:
        st.stop()
    return result


def analysis_params():
    """The (Umap, Hdbscan) parameters to show: those last chosen in this session (Map page, finer clusters), else
    the defaults. A read-only viewer always gets those of the collection's most recently used cached analysis
    (what an editor last chose), else the defaults."""
    from mmcore.analysis.clusters import Hdbscan
    from mmcore.analysis.maps import latest_parameters
    from mmcore.analysis.projection import Umap

    if write_denied():
        current = space()
        return (current and latest_parameters(workspace(), collection(), current)) or (Umap(), Hdbscan())
    return st.session_state.get("analysis_params") or (Umap(), Hdbscan())


def analysis(space: str, umap, hdbscan, refit: bool = False):
    """The current collection's analysis (from the disk cache when unchanged), with live progress.

    Server-side guard for read-only viewers, whatever their widgets sent: they get the analysis of
    `analysis_params()`, from the cache (new items placed on its fit at most), never a fit, a refit or other
    parameters: fitting costs minutes and a folder of cache files per parameter set.
    """
    from mmcore.analysis.maps import NotAnalysed, analyze

    viewer = write_denied() is not None
    if viewer:
        umap, hdbscan = analysis_params()
        refit = False
    else:
        st.session_state["analysis_params"] = (umap, hdbscan)
    slot, picture = st.empty(), st.empty()
    try:
        return analyze(workspace(), collection(), space, umap, hdbscan, refit=refit, may_fit=not viewer,
                       on_progress=lambda stage: slot.info(f"{stage}…", icon=":material/hourglass_top:"),
                       on_stage=lambda partial: _first_picture(picture, partial))
    except NotAnalysed as e:
        st.info(plain(e), icon=":material/lock:")
        return None
    except MMError as e:
        st.error(plain(e), icon=":material/error:")
        return None
    finally:
        slot.empty()
        picture.empty()


def _first_picture(slot, partial) -> None:
    """The map so far while a fit goes on: its shape first, then its outliers, then its clusters, as each is done."""
    from mmcore.analysis.figures import partial_figure

    slot.plotly_chart(partial_figure(partial), theme=None, config={"displaylogo": False})


def finer_clusters(analysis, space: str) -> None:
    """When the clusters are too coarse to review, say so and offer the finer clustering in one click."""
    reason = analysis.coarse
    finer = analysis.finer
    if reason is None or finer == analysis.requested:  # nothing finer to offer (the smallest cluster size)
        return
    how = ("leaf selection: the smallest dense groups of HDBSCAN's tree" if analysis.hdbscan.selection != "leaf"
           else f"a min cluster size of {finer.min_cluster_size}")
    denied = write_denied()
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.warning(f"These clusters are too coarse to review: {reason}. A finer clustering ({how}) splits them into "
                 "groups worth reviewing one by one.", icon=":material/zoom_in:")
    if right.button("Show finer clusters", type="primary", icon=":material/zoom_in:", disabled=bool(denied),
                    help=denied or "Fits the clusters again with finer settings (the map stays as it is)."):
        require_write()
        st.session_state["analysis_params"] = (analysis.umap, finer)
        st.rerun()


def cached_analysis(space: str):
    """The current collection's analysis with the Map page's last parameters if it is on disk, else None (never
    computes one: pages that only show an item's cluster shouldn't start a fit)."""
    from mmcore.analysis.maps import AnalysisCache, size_of

    ws = workspace()
    umap, hdbscan = analysis_params()
    try:
        target = ws.store.open(collection(), space)
        version = target.version
    except MMError:
        return None
    return AnalysisCache(ws.settings.data_dir / "cache", collection(), space, umap, hdbscan,
                         size=size_of(target)).load_result(version)


TABLES_KEPT = 4  # items tables shared by the sessions of this server, newest used last (50,000 items: about 20 MB)


@st.cache_resource(show_spinner=False)
def _tables() -> dict:
    """The items tables of this server, shared by all of its sessions ({key: (table, warning)}), and a count of
    the tag edits made through it."""
    return {"tables": {}, "tag_edits": 0, "lock": threading.Lock()}


def analysis_table(analysis):
    """Items joined with the analysis, shared by every session of this server until the collection, the
    parameters, the taxonomy or vocabulary, or any tag changes (through this server: tags edited by another
    process show once the collection changes). Read-only: pages derive new tables from it.

    Building it reads every item's metadata from the store (3-4 s at 50,000 items), which a new session (a new
    tab) would otherwise pay again before the Map page could draw.
    """
    from mmcore.analysis.frame import analysis_frame
    from mmcore.analysis.naming import cluster_names
    from mmcore.analysis.taxonomy import load_taxonomy, taxonomy_path

    ws = workspace()
    shared = _tables()
    files = (taxonomy_path(ws.settings.data_dir, analysis.collection, analysis.space), ws.settings.data_dir / "vocabulary.txt")
    key = (analysis.collection, analysis.space, analysis.version, analysis.fit_key, analysis.umap, analysis.hdbscan,
           analysis.placed, shared["tag_edits"], *(f.stat().st_mtime_ns if f.exists() else 0 for f in files))
    with shared["lock"]:
        cached = shared["tables"].pop(key, None)
        if cached is not None:
            shared["tables"][key] = cached  # the most recently used last
    if cached is None:
        labels, names, warning = None, {}, None
        try:  # a damaged vocabulary or taxonomy file is named, and the map shown all the same
            names = cluster_names(ws, analysis)
            labels, names = load_taxonomy(ws, analysis.collection, analysis.space).apply(analysis, names)
        except MMError as e:
            warning = f"{e} Until then clusters keep their automatic names."
        target = ws.store.open(analysis.collection, analysis.space)
        cached = (analysis_frame(target, analysis, names, media_root=ws.files.root, labels=labels), warning)
        with shared["lock"]:
            shared["tables"][key] = cached
            while len(shared["tables"]) > TABLES_KEPT:
                del shared["tables"][next(iter(shared["tables"]))]
    if cached[1]:
        st.warning(plain(cached[1]), icon=":material/warning:")
    return cached[0]


def tags_changed() -> None:
    """Call after changing tags: every session's items tables are rebuilt."""
    shared = _tables()
    with shared["lock"]:
        shared["tag_edits"] += 1


GALLERY_LIMIT = 40


def gallery(frame, columns: int = 8) -> None:
    """Thumbnails (or snippets) of the frame's first rows, with their source names."""
    shown = frame.head(GALLERY_LIMIT)
    for start in range(0, len(shown), columns):
        for col, row in zip(st.columns(columns), shown.iloc[start : start + columns].itertuples()):
            with col:
                if not picture(row.thumbnail) and row.snippet:
                    snippet(row.snippet)
                st.caption(plain(row.source))
    if len(frame) > GALLERY_LIMIT:
        st.caption(f"… and {len(frame) - GALLERY_LIMIT:,} more")


def tag_form(ids: list[str], space: str, key: str) -> None:
    """Tag (or untag) these items of the current collection."""
    denied = write_denied()
    with st.form(key, clear_on_submit=True, border=False):
        left, middle, right = st.columns([3, 1, 1])
        tag = left.text_input("Tag", placeholder="e.g. needs-review", label_visibility="collapsed", disabled=bool(denied))
        add = middle.form_submit_button(f"Tag {len(ids):,}", icon=":material/sell:", type="primary",
                                        disabled=bool(denied), help=denied)
        remove = right.form_submit_button("Untag", icon=":material/label_off:", disabled=bool(denied), help=denied)
    if (add or remove) and tag.strip():
        require_write()
        target = workspace().store.open(collection(), space)
        if guarded(lambda: target.update_tags(ids, add=[tag] if add else [], remove=[tag.strip()] if remove else []) or True,
                   needs_model=False):
            tags_changed()
            st.toast(plain(f"{'Tagged' if add else 'Untagged'} {len(ids):,} item(s) '{tag.strip()}'"), icon=":material/sell:")


def selection_panel(frame, ids: list[str], space: str) -> None:
    chosen = frame[frame["id"].isin(set(ids))]
    st.subheader(f"{len(chosen):,} selected", divider="gray")
    tag_form(list(chosen["id"]), space, key="tag-selection")
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    sources = dict(zip(chosen["id"], chosen["source"]))
    pick = left.selectbox("Item", list(sources), format_func=lambda i: f"{sources[i]} ({i})", key="like-pick")
    with right.container(horizontal=True, gap="small"):
        if st.button("More like this", icon=":material/travel_explore:", key="like-search"):
            st.session_state["like"] = (pick, space)
            st.switch_page("pages/search.py")
        if st.button("Open", icon=":material/open_in_full:", key="open-pick"):
            open_item(pick, space)
        if workspace().settings.caption_model and st.button(
                "Caption", icon=":material/subtitles:", key="caption-selection", disabled=bool(write_denied()),
                help=write_denied() or "Write a caption for each selected picture that has none (MMCORE_CAPTION_MODEL)"):
            caption_selection(list(chosen["id"]))
    gallery(chosen)


def caption_selection(ids: list[str]) -> None:
    """Caption these items' pictures that have no caption yet, with a progress bar."""
    from mmcore.captions import caption_collection

    require_write()
    bar = st.progress(0.0, text="Captioning…")
    report = guarded(lambda: caption_collection(workspace(), collection(), ids=ids,
                                                on_progress=lambda done, total: bar.progress(done / total, text=f"Captioned {done:,} of {total:,}")),
                     needs_model=False)
    bar.empty()
    if report is not None:
        st.toast(f"{report.captioned:,} caption(s) written for {report.pictures:,} picture(s) without one", icon=":material/subtitles:")
        for problem in report.problems:
            st.warning(plain(problem))


COMPONENTS = Path(__file__).parent / "components"
_map_hover = st.components.v2.component(
    "mmscope.map_hover", js=(COMPONENTS / "map_hover.js").read_text(), css=(COMPONENTS / "map_hover.css").read_text(),
    isolate_styles=False,
)


def map_color(chart_key: str, default: str = "cluster") -> str:
    """The column the map with key `chart_key` was last coloured by in this session (its in-figure menu tells
    ui.map_hover), so a redrawn figure opens with it; `default` before that."""
    return (st.session_state.get(f"{chart_key}-hover") or {}).get("color") or default


@st.fragment
def map_hover(frame, chart_key: str) -> None:
    """A card that follows the pointer over the chart with key `chart_key` and shows the hovered point's thumbnail
    or text. Each hover reruns only this fragment; the chart's customdata must be rows of `frame`. It also remembers
    the column picked in the chart's "Colour by" menu (see `map_color`)."""
    from mmcore.analysis.colors import color_options
    from mmcore.analysis.figures import point_preview

    key = f"{chart_key}-hover"
    state = st.session_state.get(key) or {}
    data = {"chart": chart_key, "options": color_options(frame),
            "preview": point_preview(frame, state.get("row"), state.get("color"))}
    _map_hover(key=key, data=data, on_row_change=lambda: None, on_color_change=lambda: None)


MAX_TABLE_ROWS = 1_000


def items_table(view, key: str, what: str) -> list[str]:
    """The items of `view` (mmcore.analysis.frame.table_view) as a table whose rows can be picked; returns the
    picked items' ids. A new set of rows starts a new selection."""
    import hashlib

    shown = view.head(MAX_TABLE_ROWS)
    digest = hashlib.sha1("\n".join(shown["id"]).encode()).hexdigest()[:10]
    more = f" (the first {MAX_TABLE_ROWS:,} shown)" if len(view) > MAX_TABLE_ROWS else ""
    st.caption(f"{len(view):,} items {what}{more}; pick rows to ring them on the map.")
    event = st.dataframe(
        shown.drop(columns=["id"]), key=f"{key}-{digest}", on_select="rerun", selection_mode="multi-row", hide_index=True,
        height=320, width="stretch",
        column_config={
            "source": st.column_config.TextColumn("Source", width="medium"),
            "cluster_name": st.column_config.TextColumn("Cluster"),
            "modality": st.column_config.TextColumn("Kind", width="small"),
            "outlier_score": st.column_config.ProgressColumn("Outlier", format="%.2f", min_value=0.0, max_value=1.0, width="small"),
            "added_at": st.column_config.DatetimeColumn("Added", format="YYYY-MM-DD HH:mm"),
            "tags": st.column_config.TextColumn("Tags"),
            "snippet": st.column_config.TextColumn("Text"),
        },
    )
    rows = event.selection.rows if event else []
    return [shown["id"].iloc[r] for r in rows if 0 <= r < len(shown)]


FACETS_HEIGHT = 680  # the map's


def facet_panel(frame):
    """A facet per metadata field (counts per value; histograms of numbers and dates with a range), each counting
    the items the other facets keep. Returns the mmcore.analysis.facets.FacetFilters they set."""
    from datetime import datetime, timedelta, timezone

    from mmcore.analysis.facets import FacetFilters, facets, histogram, value_counts, value_range

    values, ranges = {}, {}

    def current() -> FacetFilters:
        return FacetFilters(dict(values), dict(ranges))

    found = facets(frame)
    # Read every facet's last choice first, so each one counts with all the others' filters.
    for facet in found:
        chosen = st.session_state.get(f"facet-{facet.column}")
        if facet.kind in ("category", "tags") and chosen:
            values[facet.column] = tuple(chosen)
        elif facet.kind in ("number", "date") and chosen:
            lo, hi = (v.replace(tzinfo=timezone.utc).timestamp() if isinstance(v, datetime) else v for v in chosen)
            full = value_range(frame, facet.column)
            if lo > full[0] or hi < full[1]:
                ranges[facet.column] = (lo, hi)
    with st.container(height=FACETS_HEIGHT, border=True, key="facets"):
        st.caption("Filter the map by metadata: each facet counts the items the others keep.")
        for facet in found:
            label = plain(facet.column.replace("_", " "))  # a metadata key: data
            if facet.kind in ("category", "tags"):
                counts = value_counts(frame, facet.column, current())
                labels = {v: f"{name} ({n:,})" for v, name, n in counts}
                st.multiselect(label, list(labels), format_func=lambda v, labels=labels: labels.get(v, str(v)),
                               key=f"facet-{facet.column}", placeholder="any")
            else:
                lo, hi = value_range(frame, facet.column)
                if lo == hi:
                    continue
                bars = histogram(frame, facet.column, current())
                st.caption(label)
                st.plotly_chart(_histogram_figure(bars, facet.kind == "date"), config={"staticPlot": True},
                                theme=None, key=f"facet-hist-{facet.column}")
                if facet.kind == "date":
                    lo_d, hi_d = (datetime.fromtimestamp(v, tz=timezone.utc).replace(tzinfo=None) for v in (lo, hi))
                    step = max(timedelta(minutes=1), (hi_d - lo_d) / 200)
                    st.slider(label, lo_d, hi_d, (lo_d, hi_d), step=step, format="YYYY-MM-DD HH:mm", key=f"facet-{facet.column}",
                              label_visibility="collapsed")
                else:
                    st.slider(label, lo, hi, (lo, hi), key=f"facet-{facet.column}", label_visibility="collapsed")
    return current()


def _histogram_figure(bars, dates: bool):
    import pandas as pd
    import plotly.graph_objects as go

    x = (bars["start"] + bars["end"]) / 2
    if dates:
        x = pd.to_datetime(x, unit="s")
    figure = go.Figure(go.Bar(x=x, y=bars["count"], marker_color="#6366f1", width=None))
    figure.update_layout(height=70, margin=dict(l=0, r=0, t=0, b=18), bargap=0.05, plot_bgcolor="white",
                         xaxis=dict(tickfont=dict(size=9), nticks=4), yaxis=dict(visible=False),
                         font=dict(family='"Source Sans", sans-serif'))
    return figure
