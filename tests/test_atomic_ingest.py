"""Atomic, resumable ingest: the journal and its recovery, and a real `python -m mmcore ingest` killed (SIGKILL)
at several points, each time checked against what it reported, then run again to completion.

The kill points come from a wrapper script the test writes (no test hooks in product code): it cuts every
upsert into pairs of items, so a file's items take several writes, and SIGKILLs its own process right after
the n-th upsert, journal `begin` or journal `commit`; other runs are killed from outside once they have
reported some files. It also sets the size of a big file's groups (GROUP_ITEMS) and says how many items it
upserted. An embedded Chroma store must not be open in two processes at once, so the test process opens it only
between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import media_factory as mf
from media_audio import make_wav
from mmcore.config import Settings
from mmcore.errors import NotFound
from mmcore.ingest import SourceFile, collect_files, ingest
from mmcore.journal import Journal, journal_dir, open_groups, recover
from mmcore.store import Store, open_client
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "c"
PROGRESS = re.compile(r"^\[\d+/\d+\] (added|skipped|failed)\s+(.+?)(?:: .*)?$")

WRAPPER = """
import atexit, collections, os, signal, sys
from mmcore import cli, ingest, journal, store

if os.environ.get("GROUP_ITEMS"):
    ingest.GROUP_ITEMS = int(os.environ["GROUP_ITEMS"])

point, _, nth = os.environ.get("KILL_AFTER", "").partition(":")
counts = collections.Counter()
group_spaces = []

def tick(name):
    counts[name] += 1
    if name == point and counts[name] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)

real_begin, real_commit, real_add = journal.Journal.begin, journal.Journal.commit, store.ItemCollection.add

def begin(self, collection, ids):
    group_spaces[:] = list(ids)
    group = real_begin(self, collection, ids)
    tick("begin")
    return group

def commit(self, group):
    real_commit(self, group)
    tick("commit")

def add_in_pairs(self, ids, vectors, metadatas, documents, version=None):
    counts["upserted_items"] += len(ids)
    for i in range(0, len(ids), 2):
        real_add(self, ids[i:i + 2], vectors[i:i + 2], metadatas[i:i + 2], documents[i:i + 2], version=version)
        tick("upsert")
    if len(group_spaces) > 1 and self.space.space == group_spaces[0]:
        tick("between_spaces")

journal.Journal.begin, journal.Journal.commit, store.ItemCollection.add = begin, commit, add_in_pairs
atexit.register(lambda: print(f"upserted {counts['upserted_items']} items", file=sys.stderr))
sys.exit(cli.main(sys.argv[1:]))
"""


# --- the journal itself ----------------------------------------------------------------------------------


def crash(journal: Journal) -> None:
    """What the kernel does when the writer dies: its lock goes, its journal file stays."""
    os.close(journal._fd)
    journal._fd = -1


def put(ws: Workspace, ids: list[str], space: str = "clip") -> None:
    target = ws.collection(COLLECTION, space)
    vectors = np.eye(len(ids), target.space.dim, dtype=np.float32)
    target.add(ids, vectors, [{"source_hash": i.split(":")[0]} for i in ids], [None] * len(ids))


def ids_in(ws: Workspace) -> set[str]:
    return set(ws.collection(COLLECTION).raw.get(include=[])["ids"])


def test_an_uncommitted_group_of_a_dead_writer_is_rolled_back_and_committed_ones_stay(ws):
    directory = journal_dir(ws.settings.data_dir)
    journal = Journal(directory, ws.store)
    put(ws, ["a:1", "a:2"])
    journal.commit(journal.begin(COLLECTION, {"clip": ["a:1", "a:2"]}))
    group = journal.begin(COLLECTION, {"clip": ["b:1", "b:2", "b:3"], "clap": ["b:4"]})
    put(ws, ["b:1", "b:2"])  # killed before b:3 and before the clap space was written (or even created)
    crash(journal)
    assert list(open_groups(journal.path)) == [group]
    assert recover(ws.store, directory) == 1
    assert ids_in(ws) == {"a:1", "a:2"}
    assert list(directory.iterdir()) == []
    assert recover(ws.store, directory) == 0


def test_a_live_writer_is_never_rolled_back(ws):
    directory = journal_dir(ws.settings.data_dir)
    with Journal(directory, ws.store) as journal:
        journal.begin(COLLECTION, {"clip": ["x:1"]})
        put(ws, ["x:1"])
        assert recover(ws.store, directory) == 0  # locked: its writer is alive (here, this very process)
        assert ids_in(ws) == {"x:1"}
        journal.commit(1)
    assert ids_in(ws) == {"x:1"} and list(directory.iterdir()) == []


def test_leaving_a_journal_on_an_error_rolls_back_its_open_group(ws):
    directory = journal_dir(ws.settings.data_dir)
    with pytest.raises(RuntimeError):
        with Journal(directory, ws.store) as journal:
            journal.begin(COLLECTION, {"clip": ["y:1", "y:2"]})
            put(ws, ["y:1"])
            raise RuntimeError("the store went away between two upserts")
    assert ids_in(ws) == set() and list(directory.iterdir()) == []


def test_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "w.journal"
    path.write_text('{"begin":1,"collection":"c","ids":{"clip":["a:1"]}}\n{"commit":1}\n'
                    '{"begin":2,"collection":"c","ids":{"clip":["b:1"]}}\n{"comm')
    assert open_groups(path) == {2: ("c", {"clip": ["b:1"]})}


def test_opening_a_workspace_recovers_and_a_half_written_file_is_ingested_again_whole(ws, settings, media):
    name = "long.txt"
    whole = ingest(ws, [SourceFile(name, path=media[name])], collection=COLLECTION)
    full = ids_in(ws)
    assert whole.results[0].items == len(full) > 2
    ws.collection(COLLECTION).delete(sorted(full)[1:])  # as if killed after its first upsert ...
    journal = Journal(journal_dir(settings.data_dir), ws.store)
    journal.begin(COLLECTION, {"clip": sorted(full)})
    crash(journal)  # ... and before its commit

    reader = Workspace(settings)
    assert ids_in(reader) == set(), "a new workspace never shows a file a crash cut short"
    again = ingest(reader, [SourceFile(name, path=media[name])], collection=COLLECTION)
    assert [(r.status, r.items) for r in again.results] == [("added", len(full))]
    assert ids_in(reader) == full


# --- a real ingest, killed ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """30 small files, kinds interleaved: pictures, texts of several windows, sounds (the clap space).

    Model batches of 4 make write groups of one to three files, in one space or both, of one to seven items.
    """
    root = tmp_path_factory.mktemp("atomic") / "inbox"
    root.mkdir()
    rng = np.random.default_rng(7)
    text = mf.long_text_content()
    for i in range(30):
        if i % 4 == 0:
            (root / f"f{i:02}.txt").write_text(f"note {i}: " + text[i * 23: i * 23 + 400 - 8 * i], encoding="utf-8")
        elif i in (5, 14, 23):
            (root / f"f{i:02}.wav").write_bytes(make_wav(12 + i // 2, freqs=[100 + 20 * i, 3000 - 50 * i]))
        else:
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            image = mf.picture((24 + i, 60 - i), colour, ["none", "stripes", "checker", "circle", "cross"][i % 5])
            (root / f"f{i:02}.png").write_bytes(mf.encode(image, "PNG"))
    return root


def settings_for(data_dir: Path, clip_dir: Path, clap_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, models={"clip": str(clip_dir), "clap": str(clap_dir)}, batch_size=4)


def snapshot(store: Store) -> dict[str, dict]:
    """Every item of the collection in both spaces: {"space/id": metadata}."""
    items = {}
    for space in ("clip", "clap"):
        try:
            raw = store.open(COLLECTION, space).raw.get(include=["metadatas"])
        except NotFound:
            continue
        items.update({f"{space}/{i}": m for i, m in zip(raw["ids"], raw["metadatas"])})
    return items


def by_source(items: dict[str, dict]) -> dict[str, set[str]]:
    sources: dict[str, set[str]] = {}
    for key, meta in items.items():
        sources.setdefault(meta["source"], set()).add(key)
    return sources


@pytest.fixture(scope="module")
def reference(folder, clip_dir, clap_dir, tmp_path_factory) -> dict[str, dict]:
    """What one clean, uninterrupted ingest of the folder stores."""
    ws = Workspace(settings_for(tmp_path_factory.mktemp("clean") / "data", clip_dir, clap_dir))
    files, _ = collect_files([folder])
    report = ingest(ws, files, collection=COLLECTION)
    assert report.ok and {r.status for r in report.results} == {"added"}
    items = snapshot(ws.store)
    sizes = [len(ids) for ids in by_source(items).values()]
    assert min(sizes) == 1 and max(sizes) >= 5, "files of one and of many items"
    return items


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(settings.data_dir), MMCORE_CLIP_MODEL=settings.model_for("clip"),
               MMCORE_CLAP_MODEL=settings.model_for("clap"), MMCORE_BATCH_SIZE=str(settings.batch_size), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT), **extra)
    return env


def run_ingest(settings: Settings, folder: Path, kill_after: str = "", kill_on_added: int = 0,
               delay: float = 0.0, args: tuple[str, ...] = (), other: list[str] | None = None,
               stdout: Path | None = None, **env: str) -> tuple[int, list[tuple[str, str]]]:
    """Run the CLI ingest through the wrapper; SIGKILL it from outside `delay` s after its `kill_on_added`-th added file.

    Returns its exit status and every (status, name) it reported; its other lines of stderr go to `other`, its
    stdout to the file `stdout`.
    """
    wrapper = settings.data_dir.parent / "kill_wrapper.py"
    wrapper.write_text(WRAPPER)
    process = subprocess.Popen([sys.executable, str(wrapper), "ingest", str(folder), "--collection", COLLECTION, *args],
                               cwd=ROOT, env=cli_env(settings, KILL_AFTER=kill_after, **env), text=True,
                               stdout=open(stdout, "w") if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE)
    reported, killed = [], False
    other = [] if other is None else other
    try:
        for line in process.stderr:  # stderr is line-buffered: each line arrives as the file is reported
            match = PROGRESS.match(line)
            if not match:
                other.append(line)
                continue
            reported.append(match.groups())
            if kill_on_added and not killed and sum(s == "added" for s, _ in reported) == kill_on_added:
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                killed = True
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode in (0, -signal.SIGKILL), "".join(other)
    return process.returncode, reported


def check_after_kill(settings: Settings, reference: dict[str, dict], reported: list[tuple[str, str]]) -> tuple[set[str], bool]:
    """Everything reported as added is whole in the store, and after recovery no file is partial.

    Returns the files in the store, and whether some file was partly in it before recovery.
    """
    expected = by_source(reference)
    store = Store(open_client(settings))  # no recovery yet
    before = by_source(snapshot(store))
    for status, name in reported:
        if status == "added":
            assert before.get(name) == expected[name], f"{name} was reported as added but is not whole"
    recover(store, journal_dir(settings.data_dir))
    items = snapshot(store)
    after = by_source(items)
    for name, keys in after.items():
        assert keys == expected[name], f"{name} is partly in the store after recovery"
    media = settings.data_dir / "media"
    for meta in items.values():
        assert (media / meta["original"]).is_file()
        assert "thumbnail" not in meta or (media / meta["thumbnail"]).is_file()
    for path in media.rglob("*.*"):
        if path.name.startswith(".tmp-"):  # an interrupted atomic write's temp file: never named, never read
            continue
        if path.parent.parent.name == "originals":
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(".")[0], f"{path} is cut short"
        else:
            with Image.open(path) as thumbnail:
                thumbnail.load()
    assert not list(journal_dir(settings.data_dir).glob("*.journal"))
    _close(store)
    return set(after), any(keys != expected[name] for name, keys in before.items())


def _close(store: Store) -> None:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # the next run's process must have the store to itself


@pytest.mark.slow  # real CLI processes killed mid-run
def test_killed_ingests_lose_nothing_reported_and_a_rerun_completes_without_duplicates(
        tmp_path, folder, reference, clip_dir, clap_dir):
    settings = settings_for(tmp_path / "data", clip_dir, clap_dir)
    names = {f"{folder.name}/{p.name}" for p in folder.iterdir()}
    kills = [
        dict(kill_after="upsert:2"),  # inside a group, inside a file: some of its items written, the rest not
        dict(kill_after="between_spaces:1"),  # a group's clip items written, its clap items not
        dict(kill_after="commit:1"),  # committed but never reported
        dict(kill_on_added=2),  # from outside, at once after a report
        dict(kill_on_added=1, delay=float(np.random.default_rng().uniform(0.05, 0.4))),  # from outside, any moment
    ]
    present: set[str] = set()
    ever_added: list[str] = []
    cut_short = []
    for kill in kills:
        code, reported = run_ingest(settings, folder, **kill)
        assert code == -signal.SIGKILL, f"{kill}: the run ended before it was killed"
        assert all(s == "skipped" for s, name in reported if name in present), "a file already in was added again"
        ever_added += [name for status, name in reported if status == "added"]
        cut_short += [kill for p in journal_dir(settings.data_dir).glob("*.journal") if open_groups(p)]
        present, partial = check_after_kill(settings, reference, reported)
        assert set(ever_added) <= present
        assert partial or kill.get("kill_after") != "upsert:2", "the first kill leaves a file half-written"
    assert len(cut_short) >= 2, "kills inside a write leave an open group"
    assert len(ever_added) == len(set(ever_added)), "a file was reported as added twice"
    assert 0 < len(present) < len(names)

    done = subprocess.run([sys.executable, "-m", "mmcore", "ingest", str(folder), "--collection", COLLECTION, "--json"],
                          cwd=ROOT, env=cli_env(settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    assert set(results) == names
    assert {n for n, r in results.items() if r["status"] == "skipped"} == present
    assert {n for n, r in results.items() if r["status"] == "added"} == names - present
    expected = by_source(reference)
    assert all(r["items"] == len(expected[n]) for n, r in results.items() if r["status"] == "added")

    store = Store(open_client(settings))
    final = snapshot(store)
    assert set(final) == set(reference), "the store differs from one clean ingest of the same folder"
    assert sum(store.open(COLLECTION, s).count() for s in ("clip", "clap")) == len(reference), "duplicates"
    keep = ("source", "source_hash", "modality", "original", "thumbnail", "char_start", "start_s")
    for key, meta in final.items():
        assert {k: meta.get(k) for k in keep} == {k: reference[key].get(k) for k in keep}
    _close(store)


# --- a big file, in checkpointed groups ----------------------------------------------------------------------

BIG_ROWS = 1200
GROUP = 100  # items per group in these tests (the real GROUP_ITEMS is 4,096): 12 groups


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """A CSV of 1,200 short rows: one item each, in the order of its rows."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    words = ["tide", "harbour", "storm", "mackerel", "lighthouse", "shell", "pier", "ledger"]
    path.write_text("n,note\n" + "".join(f"{i},{words[i % 8]} {words[i * 7 % 8]} {i}\n" for i in range(BIG_ROWS)))
    return path


@pytest.fixture(scope="module")
def big_reference(big_csv, clip_dir, clap_dir, tmp_path_factory) -> dict[str, dict]:
    """What one clean, uninterrupted ingest of the big CSV stores (in one go: the group size changes no id)."""
    ws = Workspace(settings_for(tmp_path_factory.mktemp("big-clean") / "data", clip_dir, clap_dir))
    report = ingest(ws, [SourceFile(big_csv.name, path=big_csv)], collection=COLLECTION, csv_rows=True)
    assert [(r.status, r.items) for r in report.results] == [("added", BIG_ROWS)]
    return snapshot(ws.store)


def rows_in(items: dict[str, dict]) -> list[int]:
    return sorted(meta["row"] for meta in items.values())


def partial_record(settings: Settings):
    from mmcore.journal import partial_files

    records = partial_files(journal_dir(settings.data_dir))
    return records[0] if records else None


@pytest.mark.slow  # real CLI processes killed mid-run
def test_a_big_file_killed_between_and_inside_its_groups_keeps_whole_groups_and_a_rerun_adds_only_the_rest(
        tmp_path, big_csv, big_reference, clip_dir, clap_dir):
    from mmcore.health import check_store

    settings = settings_for(tmp_path / "data", clip_dir, clap_dir)
    wanted = ("--csv-rows",)

    # Killed in the middle of its third group (each upsert is a pair of items: the 125th is in group 3).
    code, reported = run_ingest(settings, big_csv, kill_after="upsert:125", args=wanted, GROUP_ITEMS=str(GROUP))
    assert code == -signal.SIGKILL and reported == [], "a file is never reported before its last group is in"
    store = Store(open_client(settings))
    assert len(snapshot(store)) == 250, "groups 1 and 2, and half of group 3, before recovery"
    kinds = {p.kind for p in check_store(settings).problems}
    assert kinds == {"unfinished write", "partly ingested"}
    recover(store, journal_dir(settings.data_dir))
    assert rows_in(snapshot(store)) == list(range(1, 201)), "whole groups only once recovered"
    assert partial_record(settings).committed == [(0, 100), (100, 200)]
    assert {p.kind for p in check_store(settings).problems} == {"partly ingested"}
    _close(store)

    # Run again and killed right after the commit of its second group of this run (group 4), before that
    # commit is in the file's record: group 4 is in the store but will be written again, with the same ids.
    code, reported = run_ingest(settings, big_csv, kill_after="commit:2", args=wanted, GROUP_ITEMS=str(GROUP))
    assert code == -signal.SIGKILL and reported == []
    store = Store(open_client(settings))
    recover(store, journal_dir(settings.data_dir))
    assert rows_in(snapshot(store)) == list(range(1, 401))
    assert partial_record(settings).committed == [(0, 100), (100, 200), (200, 300)]
    _close(store)

    # The last run embeds and writes only what its record does not hold, and completes the file.
    other: list[str] = []
    out = tmp_path / "report.json"
    code, reported = run_ingest(settings, big_csv, args=(*wanted, "--json"), other=other, stdout=out, GROUP_ITEMS=str(GROUP))
    assert code == 0, "".join(other)
    assert f"upserted {BIG_ROWS - 300} items\n" in other
    [result] = json.loads(out.read_text())["results"]
    assert (result["status"], result["items"]) == ("added", BIG_ROWS), "reported whole, as added"
    assert any("cut short" in note and "300 of its items" in note for note in result["notes"]), result["notes"]
    store = Store(open_client(settings))
    final = snapshot(store)
    assert set(final) == set(big_reference) and store.open(COLLECTION).count() == BIG_ROWS, "same ids, none twice"
    keep = ("source", "source_hash", "row", "char_start", "char_end", "csv_note", "original")
    assert all({k: m.get(k) for k in keep} == {k: big_reference[key].get(k) for k in keep} for key, m in final.items())
    _close(store)
    assert partial_record(settings) is None and check_store(settings).ok
    again = ingest(Workspace(settings), [SourceFile(big_csv.name, path=big_csv)], collection=COLLECTION, csv_rows=True)
    assert [r.status for r in again.results] == ["skipped"], "whole now: already in the collection"


class Interrupted(BaseException):
    """What Ctrl-C (KeyboardInterrupt) or a page left mid-upload does: stops the ingest from inside the model."""


def stop_after(monkeypatch, ws: Workspace, calls: int, error: BaseException) -> None:
    """Make the clip model raise `error` from its `calls`-th text batch on (a fault injected into the model)."""
    space = ws.space()
    real, seen = space.embed_texts, []

    def embed_texts(texts):
        seen.append(len(texts))
        if len(seen) >= calls:
            raise error
        return real(texts)

    monkeypatch.setattr(space, "embed_texts", embed_texts)


def test_a_big_file_stopped_keeps_its_groups_and_resumes_with_progress_counting_only_the_rest(
        tmp_path, monkeypatch, big_csv, big_reference, clip_dir, clap_dir):
    import mmcore.ingest

    monkeypatch.setattr(mmcore.ingest, "GROUP_ITEMS", GROUP)
    ws = Workspace(settings_for(tmp_path / "data", clip_dir, clap_dir))
    with monkeypatch.context() as patch:
        stop_after(patch, ws, 70, Interrupted())  # batches of 4: 276 items embedded, groups 1 and 2 written
        with pytest.raises(Interrupted):
            ingest(ws, [SourceFile(big_csv.name, path=big_csv)], collection=COLLECTION, csv_rows=True)
    assert rows_in(snapshot(ws.store)) == list(range(1, 201))
    assert partial_record(ws.settings).items == 200

    progress = []
    report = ingest(ws, [SourceFile(big_csv.name, path=big_csv)], collection=COLLECTION, csv_rows=True,
                    on_progress=progress.append)
    assert [(r.status, r.items) for r in report.results] == [("added", BIG_ROWS)]
    assert set(snapshot(ws.store)) == set(big_reference)
    assert progress[-1].items_done == progress[-1].items_total == BIG_ROWS - 200, "only the rest is embedded"
    assert all(p.items_total == BIG_ROWS - 200 for p in progress if p.stage == "embedding")
    assert partial_record(ws.settings) is None


def test_a_big_file_that_fails_after_some_groups_leaves_nothing_of_itself(tmp_path, monkeypatch, big_csv, media,
                                                                            clip_dir, clap_dir):
    import mmcore.ingest

    monkeypatch.setattr(mmcore.ingest, "GROUP_ITEMS", GROUP)
    ws = Workspace(settings_for(tmp_path / "data", clip_dir, clap_dir))
    stop_after(monkeypatch, ws, 70, RuntimeError("out of memory"))
    report = ingest(ws, [SourceFile("img.png", path=media["img.png"]), SourceFile(big_csv.name, path=big_csv)],
                    collection=COLLECTION, csv_rows=True)
    assert [(r.name, r.status) for r in report.results] == [("img.png", "added"), ("big.csv", "failed")]
    assert "out of memory" in report.results[1].reason
    assert {m["source"] for m in snapshot(ws.store).values()} == {"img.png"}, "its committed groups are gone"
    assert partial_record(ws.settings) is None


def test_a_big_file_partly_in_is_started_over_when_read_another_way(tmp_path, monkeypatch, big_csv, clip_dir, clap_dir):
    import mmcore.ingest

    monkeypatch.setattr(mmcore.ingest, "GROUP_ITEMS", GROUP)
    ws = Workspace(settings_for(tmp_path / "data", clip_dir, clap_dir))
    with monkeypatch.context() as patch:
        stop_after(patch, ws, 70, Interrupted())
        with pytest.raises(Interrupted):
            ingest(ws, [SourceFile(big_csv.name, path=big_csv)], collection=COLLECTION, csv_rows=True)
    assert len(snapshot(ws.store)) == 200
    report = ingest(ws, [SourceFile(big_csv.name, path=big_csv)], collection=COLLECTION)  # as text windows now
    assert report.results[0].status == "added" and not report.results[0].notes
    items = snapshot(ws.store)
    assert len(items) == report.results[0].items and not any("row" in m for m in items.values()), "no row is left"
    assert partial_record(ws.settings) is None
