import pandas as pd
import streamlit as st

import ui
from mmcore.ingest import SourceFile, ingest
from mmcore.media import SUPPORTED_EXTENSIONS

ui.page("Upload")
settings = ui.workspace().settings
st.caption(f"Add images, text, PDFs, video and sound to **{ui.plain(ui.collection())}**. Supported: {' '.join(SUPPORTED_EXTENSIONS)}. "
           f"Video is cut into {settings.video_segment_s} s segments and sound into {settings.audio_segment_s} s windows; "
           "each PDF page is an item, with its text. "
           + (f"Speech in audio and video is transcribed with `{settings.asr_model}` and searchable as text."
              if settings.asr_model else "Speech is not transcribed: set MMCORE_ASR_MODEL to a Whisper model to search what is said."))
if not ui.collection_sizes().get(ui.collection()):
    st.info("Nothing here yet: drop your files below, or load the demo on the Collections page "
            "(handwritten digits, no model download).", icon=":material/info:")

denied = ui.write_denied()
# Streamlit's own "per file" note rounds 512 MB up to "1GB", so it is hidden (STYLE) and the label says the limits.
per_file_mb = min(settings.max_file_bytes // 2**20, st.get_option("server.maxUploadSize"))
uploads = st.file_uploader(
    f"Drop files here: up to {per_file_mb:,} MB each, {settings.max_upload_bytes // 2**20:,} MB in all",
    accept_multiple_files=True, key=f"uploader-{st.session_state['upload_key']}", disabled=bool(denied), help=denied,
)
left, right = st.columns([3, 2])
tags = left.text_input("Tags for these files (comma-separated, optional)", placeholder="e.g. batch-1, beach")
csv_rows = right.checkbox("CSV files: one item per row",
                          help="Otherwise a CSV is read as one text, in windows. A CSV with a column of image file names "
                               "and one of captions then pairs each caption with its image, from this upload or the collection.")

if st.button(f"Add {len(uploads)} file(s)" if uploads else "Add files", type="primary",
             disabled=not uploads or bool(denied), help=denied):
    ui.require_write()
    sources = [SourceFile(f.name, data=f.getvalue()) for f in uploads]

    def run():
        bar = st.progress(0.0, text="Loading models…")

        def progress(p):
            if p.stage == "loading models":
                return
            if p.stage == "reading":
                bar.progress(p.fraction, text=f"Reading {ui.plain(p.current)}… · {p.summary()}")
            else:
                doing = f" · {ui.plain(p.current)}" if p.current and p.stage != "done" else ""
                bar.progress(p.fraction, text=p.summary() + doing)

        return ingest(
            ui.workspace(), sources, collection=ui.collection(),
            tags=[t for t in tags.split(",")], csv_rows=csv_rows, on_progress=progress,
            max_total_bytes=settings.max_upload_bytes,
        )

    report = ui.guarded(run, needs_model=())  # ingest loads each kind's model itself: one missing fails only its files
    if report is not None:
        st.session_state["last_report"] = report
        st.session_state["upload_key"] += 1  # clears the uploader
        st.rerun()

report = st.session_state["last_report"]
if report is not None:
    st.subheader("Last upload")
    added, skipped, failed = (report.by_status(s) for s in ("added", "skipped", "failed"))
    a, s, f, i = st.columns(4)
    a.metric("Added", len(added))
    s.metric("Skipped", len(skipped))
    f.metric("Refused", len(failed))
    i.metric("Items embedded", f"{report.items_added:,}")
    if failed:
        by_reason: dict[str, list[str]] = {}
        for r in failed:
            by_reason.setdefault(r.reason or "", []).append(r.name)
        lines = "\n".join(f"- **{ui.plain(', '.join(names))}**: {ui.plain(reason)}" for reason, names in by_reason.items())
        st.error(f"Refused, and nothing of them stored:\n{lines}", icon=":material/block:")
    for r in report.results:  # captions linked to their images (or not), a big file finished after a stop
        for note in r.notes:
            st.caption(f"**{ui.plain(r.name)}**: {ui.plain(note)}")
    with st.expander(f"Every file ({len(report.results)})"):
        rows = [{"file": r.name, "result": r.status, "items": r.items, "reason": r.reason or "; ".join(r.notes)}
                for r in report.results]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    secs = report.seconds
    st.caption(f"read {secs['read']:.1f}s · embed {secs['embed']:.1f}s · write {secs['write']:.1f}s")
