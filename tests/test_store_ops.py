"""Operating a store: one writing process per embedded store (a lock), the data dir's schema version, `check`,
and `backup` / `restore`. The other processes are real `python -m mmcore` subprocesses."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mmcore import __version__
from mmcore.config import Settings
from mmcore.datadir import SCHEMA, lock_holder
from mmcore.errors import NewerDataDir
from mmcore.health import check_store
from mmcore.ingest import SourceFile, ingest
from mmcore.journal import journal_dir
from mmcore.search import Query, search
from mmcore.spaces import SpaceInfo, normalize
from mmcore.store import Store, open_client
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SPACE = SpaceInfo("vecs", "synthetic", "", 8)
FILES = ["img.jpg", "img.png", "img.gif", "long.txt"]


def mmcore(data_dir: Path, *args: str, **env: str) -> subprocess.Popen:
    """Start `python -m mmcore ARGS` on `data_dir`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    environ.update(MMCORE_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen([sys.executable, "-m", "mmcore", *args], cwd=ROOT, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=240)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return finish(mmcore(data_dir, *args, **env))


def put(ws: Workspace, name: str, n: int, seed: int = 0) -> None:
    vectors = normalize(np.random.default_rng(seed).standard_normal((n, SPACE.dim)))
    ws.store.collection(name, SPACE).add([f"{name}-{i}" for i in range(n)], vectors,
                                         [{"source": f"{name}-{i}", "source_hash": f"h{i}", "modality": "vector"} for i in range(n)],
                                         [None] * n)


def forget_chroma_clients() -> None:
    """Drop this process's cached Chroma clients: the store on disk was replaced under them."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


# --- one writer per embedded store ----------------------------------------------------------------------


def test_a_second_writing_process_is_refused_at_once_and_readers_still_work(tmp_path, clip_dir, media):
    data_dir = tmp_path / "data"
    ws = Workspace(Settings(data_dir=data_dir))
    put(ws, "mine", 5)
    assert lock_holder(data_dir)["pid"] == os.getpid()
    np.save(tmp_path / "v.npy", np.random.default_rng(1).standard_normal((4, 8)))

    attempts = {
        "import": mmcore(data_dir, "import-vectors", str(tmp_path / "v.npy"), "--collection", "theirs"),
        "ingest": mmcore(data_dir, "ingest", str(media["img.png"]), MMCORE_CLIP_MODEL=str(clip_dir)),
        "info": mmcore(data_dir, "info", "--json"),
    }
    done = {key: finish(p) for key, p in attempts.items()}
    for key in ("import", "ingest"):
        result = done[key]
        assert result.returncode == 2, result.stderr
        message = result.stderr
        assert message.startswith("error: ") and "Traceback" not in message
        assert f"The store in {data_dir} is being written by process {os.getpid()}" in message
        assert "stop that one" in message and "MMCORE_CHROMA_HOST" in message
    # (a process that waited for the lock instead would still be waiting: `finish` fails after 240 s)
    assert not (data_dir / "media").exists(), "the refused ingest stored nothing, not even an original"
    assert not list(journal_dir(data_dir).glob("*.journal"))
    assert done["info"].returncode == 0, done["info"].stderr
    assert [(c["collection"], c["items"]) for c in json.loads(done["info"].stdout)] == [("mine", 5)]
    assert [(c.name, c.count) for c in ws.store.list()] == [("mine", 5)]

    ws.close()
    assert lock_holder(data_dir) is None
    result = run(data_dir, "import-vectors", str(tmp_path / "v.npy"), "--collection", "theirs")
    assert result.returncode == 0, result.stderr
    assert lock_holder(data_dir) is None, "the lock ends with its process"
    assert {c.name: c.count for c in ws.store.list()} == {"mine": 5, "theirs": 4}


def test_workspaces_of_one_process_share_the_lock_until_the_last_closes(tmp_path):
    data_dir = tmp_path / "data"
    reader = Workspace(Settings(data_dir=data_dir))
    reader.store.list()
    assert lock_holder(data_dir) is None, "opening and reading never lock"

    (tmp_path / "link").symlink_to(data_dir)
    first, second = Workspace(Settings(data_dir=data_dir)), Workspace(Settings(data_dir=tmp_path / "link"))
    put(first, "a", 3)
    put(second, "b", 3)
    assert reader.store.open("a", "vecs").count() == 3
    first.close()
    assert lock_holder(data_dir)["pid"] == os.getpid()
    second.close()
    assert lock_holder(data_dir) is None

    with Workspace(Settings(data_dir=data_dir)) as ws:
        ws.store.open("a", "vecs").update_tags(["a-0"], add=["x"])  # a tag is a write too
        assert lock_holder(data_dir) is not None
    assert lock_holder(data_dir) is None

    forgotten = Workspace(Settings(data_dir=data_dir))
    put(forgotten, "c", 2)
    assert lock_holder(data_dir) is not None
    del forgotten
    gc.collect()
    assert lock_holder(data_dir) is None, "a workspace nobody holds gives the lock back"


def test_a_claim_collected_while_another_is_taken_gives_its_lock_back_without_deadlock(tmp_path):
    """The garbage collector may run a forgotten claim's release in the middle of taking another lock, on the same
    thread (it did, and the ingest hung): the release must not wait for the mutex its own thread holds."""
    import threading

    from mmcore import datadir

    forgotten = datadir.WriteClaim(tmp_path / "one")
    forgotten()
    release = forgotten._held  # what the collector runs once nobody holds the claim
    done = threading.Event()

    def take_another() -> None:
        with datadir._locks_mutex:  # as inside _take, where a collection may start at any allocation
            release()
        done.set()

    threading.Thread(target=take_another, daemon=True).start()
    assert done.wait(10), "the release waited for a mutex its own thread holds"
    assert lock_holder(tmp_path / "one") is None


# --- schema version ---------------------------------------------------------------------------------------


def test_the_data_dir_records_its_schema_and_a_newer_one_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    record = data_dir / "mmscope.json"
    ws = Workspace(Settings(data_dir=data_dir))
    ws.store.list()
    assert not record.exists(), "only a write records the schema"
    with ws:
        put(ws, "a", 2)
    assert json.loads(record.read_text()) == {"schema": SCHEMA, "written_by": f"mmscope {__version__}"}

    record.unlink()  # a data dir made before the schema was recorded is ours, and gets the record on its next write
    with Workspace(Settings(data_dir=data_dir)) as ws:
        assert [c.name for c in ws.store.list()] == ["a"]
        put(ws, "b", 2)
    assert json.loads(record.read_text())["schema"] == SCHEMA

    record.write_text(json.dumps({"schema": SCHEMA + 1, "written_by": "mmscope 9.0.0"}))
    with pytest.raises(NewerDataDir) as refused:
        Workspace(Settings(data_dir=data_dir)).store
    message = str(refused.value)
    assert "mmscope 9.0.0" in message and f"mmscope {__version__}" in message and "Upgrade mmscope" in message
    for command in (["info"], ["check"], ["backup", str(tmp_path / "b.tar.gz")]):
        result = run(data_dir, *command)
        assert result.returncode == 2 and "written by mmscope 9.0.0" in result.stderr, (command, result.stderr)
    assert not (tmp_path / "b.tar.gz").exists()


# --- check --------------------------------------------------------------------------------------------------


def snapshot(settings: Settings) -> dict:
    """Everything check must leave alone: every item (vector, metadata, document), and every file but Chroma's own."""
    store = Store(open_client(settings))  # not a workspace: opening one would recover unfinished writes
    items = {}
    for info in store.list():
        raw = store.open(info.name, info.space.space).raw.get(include=["embeddings", "metadatas", "documents"])
        for i, id_ in enumerate(raw["ids"]):
            items[(info.name, info.space.space, id_)] = (np.asarray(raw["embeddings"][i]).tolist(), raw["metadatas"][i], raw["documents"][i])
    files = {p.relative_to(settings.data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in settings.data_dir.rglob("*") if p.is_file() and "chroma" not in p.parts}
    return {"items": items, "files": files}


@pytest.fixture
def ingested(ws, media):
    report = ingest(ws, [SourceFile(name, path=media[name]) for name in FILES])
    assert report.ok and report.items_added > len(FILES)
    return ws


def test_check_finds_what_was_broken_on_purpose_and_changes_nothing(ingested, tmp_path):
    ws, data_dir = ingested, ingested.settings.data_dir
    assert check_store(ws.settings).ok

    target = ws.store.open("default", "clip")
    items = target.all(with_vectors=True)
    image = next(meta for id_, meta in zip(items.ids, items.metadatas) if id_.endswith(":image"))
    (ws.files.root / image["original"]).unlink()
    target.raw.update(ids=[items.ids[0]], embeddings=[items.vectors[0] * 3])
    target.raw.update(ids=[items.ids[1]], metadatas=[{"modality": None}])
    bad = ws.store.collection("odd", SpaceInfo("clip", "m", "", 16))
    bad.raw.add(ids=["short"], embeddings=[[0.5] * 4], metadatas=[{"source": "s", "source_hash": "h", "modality": "vector"}])
    journal_dir(data_dir).mkdir(parents=True, exist_ok=True)
    (journal_dir(data_dir) / "dead.journal").write_text('{"begin":1,"collection":"default","ids":{"clip":["x:1","x:2"]}}\n')
    ws.close()
    before = snapshot(ws.settings)

    result = run(data_dir, "check", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    kinds = {(p["where"], p["kind"]) for p in report["problems"]}
    assert kinds == {("default/clip", "missing original"), ("default/clip", "norm"), ("default/clip", "metadata"),
                     ("odd/clip", "dimension"), (None, "unfinished write")}
    messages = " ".join(p["message"] for p in report["problems"])
    assert image["original"] in messages and f"{items.ids[0]!r} has a vector of length 3" in messages
    assert f"{items.ids[1]!r} lacks modality" in messages and "4-d vector; the collection records 16-d" in messages
    assert {(c["name"], c["space"], c["count"], c["read"]) for c in report["collections"]} == {
        ("default", "clip", len(items), len(items)), ("odd", "clip", 1, 1)}

    text = run(data_dir, "check")
    assert text.returncode == 1 and "5 problem(s); nothing was changed" in text.stdout
    assert "problem: default/clip: [missing original]" in text.stdout
    assert snapshot(ws.settings) == before, "check changed the store"
    assert (journal_dir(data_dir) / "dead.journal").exists()


# --- backup and restore --------------------------------------------------------------------------------------


def test_backup_wipe_restore_gives_the_same_items_and_search_results(ingested, tmp_path):
    ws, data_dir = ingested, ingested.settings.data_dir
    hits = [(h.id, round(h.score, 5)) for h in search(ws, Query(text="harbour tide tables"), k=20)]
    before = snapshot(ws.settings)

    result = run(data_dir, "backup", str(tmp_path / "b.tar.gz"))
    assert result.returncode == 2 and "being written by process" in result.stderr, "not while this process may write"
    ws.close()
    result = run(data_dir, "backup", str(tmp_path / "b.tar.gz"))
    assert result.returncode == 0, result.stderr
    assert f"backed up {data_dir} to {tmp_path / 'b.tar.gz'}" in result.stdout
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        names = tar.getnames()
    assert names[0] == "mmscope-backup.json" and "data/chroma/chroma.sqlite3" in names and "data/mmscope.json" in names
    assert not any(n.endswith(".mmscope.lock") for n in names)
    assert run(data_dir, "backup", str(tmp_path / "b.tar.gz")).returncode == 2, "never overwrites a backup"

    shutil.rmtree(data_dir)
    forget_chroma_clients()
    result = run(data_dir, "restore", str(tmp_path / "b.tar.gz"))
    assert result.returncode == 0, result.stderr
    assert run(data_dir, "check").returncode == 0

    restored = Workspace(ws.settings)
    assert snapshot(restored.settings) == before
    assert [(h.id, round(h.score, 5)) for h in search(restored, Query(text="harbour tide tables"), k=20)] == hits
    restored.close()

    refused = run(data_dir, "restore", str(tmp_path / "b.tar.gz"))
    assert refused.returncode == 2 and "is not empty" in refused.stderr and "--force" in refused.stderr
    (data_dir / "stray.txt").write_text("replaced by the restore")
    forget_chroma_clients()
    assert run(data_dir, "restore", "--force", str(tmp_path / "b.tar.gz")).returncode == 0
    assert not (data_dir / "stray.txt").exists() and snapshot(ws.settings) == before
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name], "no staging folder is left behind"


def archive(path: Path, members: dict[str, bytes], manifest: dict | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            members = {"mmscope-backup.json": json.dumps(manifest).encode(), **members}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("members, manifest, refusal", [
    ({"data/../../escaped.txt": b"x"}, {"schema": 1}, "not a file under data/"),
    ({"/tmp/absolute.txt": b"x"}, {"schema": 1}, "not a file under data/"),
    ({"data/mmscope.json": b"{}"}, None, "not an mmscope backup"),
    ({"data/mmscope.json": b"{}"}, {"schema": SCHEMA + 1, "written_by": "mmscope 9.0.0"}, "upgrade mmscope"),
])
def test_restore_refuses_unsafe_or_foreign_archives_and_writes_nothing(tmp_path, members, manifest, refusal):
    path = archive(tmp_path / "a.tar.gz", members, manifest)
    result = run(tmp_path / "target" / "data", "restore", str(path))
    assert result.returncode == 2 and refusal in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.tar.gz"]
