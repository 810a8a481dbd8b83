"""Hostile paths (issue 11): nothing the command line writes lands inside the data dir or replaces a file unasked,
and every read of a path a user names is bounded by what is read, not by what the file says about itself
(devices, FIFOs, /proc files, crafted archives). The real command line runs on a real store throughout."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmcore.cli import main
from mmcore.config import Settings
from mmcore.safe_io import write_output
from mmcore.search import search_like
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
EXPORT = ["export", "--collection", "ex", "--no-analysis"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A data dir holding collection `ex` (four imported vectors, one with an image), which the CLI is pointed at;
    the working directory is the data dir's parent."""
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "v.npy", np.random.default_rng(3).normal(size=(4, 8)))
    Image.new("RGB", (16, 16), (10, 200, 30)).save(folder / "green.png")
    (folder / "meta.csv").write_text("id,image\na,green.png\nb,\nc,\nd,\n")
    data_dir = tmp_path / "data"
    ws = Workspace(Settings(data_dir=data_dir))
    assert import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="ex").images == 1
    ws.close()
    for key in [k for k in os.environ if k.startswith("MMCORE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MMCORE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    return data_dir


def searches(capsys) -> bool:
    """Whether the store still opens, answers a query by item (as the pages' "more like this" does), and
    `check` (the real command) finds it healthy."""
    hits = search_like(Workspace(Settings.from_env()), "a", "ex", k=3, space="custom")
    capsys.readouterr()
    healthy = main(["check"]) == 0 and "healthy" in capsys.readouterr().out
    return sorted(h.id for h in hits) == ["b", "c", "d"] and healthy


# --- 1. nothing the CLI writes lands inside the data dir, or replaces a file unasked ------------------------


def _inside(tmp_path: Path, data_dir: Path, how: str) -> Path:
    """A path that leads into the data dir: directly, through `..`, a symlinked file or a symlinked folder."""
    if how == "direct":
        return data_dir / "chroma" / "chroma.sqlite3"
    if how == "dotdot":
        (tmp_path / "elsewhere").mkdir()
        return tmp_path / "elsewhere" / ".." / "data" / "chroma" / "chroma.sqlite3"
    if how == "file link":
        (tmp_path / "innocent.out").symlink_to(data_dir / "chroma" / "chroma.sqlite3")
        return tmp_path / "innocent.out"
    (tmp_path / "reports").symlink_to(data_dir / "media")
    return tmp_path / "reports" / "new.out"


@pytest.mark.parametrize("command", ["export", "backup"])
@pytest.mark.parametrize("how", ["direct", "dotdot", "file link", "folder link"])
def test_a_write_into_the_data_dir_is_refused_even_with_force_and_the_store_still_works(store, tmp_path, capsys, command, how):
    target = _inside(tmp_path, store, how)
    sqlite = store / "chroma" / "chroma.sqlite3"
    before = {p.relative_to(store) for p in store.rglob("*") if p.is_file()}
    args = [*EXPORT, "--force", "--out", str(target)] if command == "export" else ["backup", "--force", str(target)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{target} is inside the data dir {store}" in err and "nothing was written" in err, err
    assert sqlite.read_bytes()[:16] == b"SQLite format 3\x00"
    assert not any(p.name.endswith(".part") for p in tmp_path.rglob("*"))
    assert searches(capsys)
    assert {p.relative_to(store) for p in store.rglob("*") if p.is_file()} <= before | {Path("chroma/.mmscope.lock")}


def test_the_default_export_name_is_refused_when_run_from_inside_the_data_dir(store, monkeypatch, capsys):
    monkeypatch.chdir(store)
    assert main(EXPORT) == 2 and "is inside the data dir" in capsys.readouterr().err
    assert not (store / "ex.csv").exists() and searches(capsys)


def test_an_existing_file_is_replaced_only_with_force(store, tmp_path, capsys):
    out = tmp_path / "ex.csv"
    out.write_text("precious")
    assert main([*EXPORT, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} exists already: add --force" in err and out.read_text() == "precious"
    assert main([*EXPORT, "--out", str(out), "--force"]) == 0
    assert out.read_text().startswith("id,") and out.read_text().count("\n") == 5

    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(b"an older backup")
    assert main(["backup", str(archive)]) == 2 and "exists already" in capsys.readouterr().err
    assert archive.read_bytes() == b"an older backup"
    assert main(["backup", "--force", str(archive)]) == 0
    with tarfile.open(archive) as tar:
        assert "data/chroma/chroma.sqlite3" in tar.getnames()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "data", "ex.csv", "in"], "no temporary file left"


def test_a_folder_or_a_fifo_is_never_a_target_even_with_force(store, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    assert main([*EXPORT, "--force", "--out", str(tmp_path / "pipe")]) == 2
    assert "is a FIFO (named pipe), not a file" in capsys.readouterr().err
    assert main([*EXPORT, "--force", "--out", str(tmp_path / "in")]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    assert (tmp_path / "in" / "v.npy").exists()


def test_a_failed_write_leaves_the_target_as_it_was_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half of it")
        raise RuntimeError("the disk is on fire")

    with pytest.raises(RuntimeError, match="on fire"):
        write_output(target, tmp_path / "data", fail, force=True)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


# --- 2. a read is bounded by what is read, not by what the file says about itself ---------------------------

# The child's whole address space (it needs about 1.2 GB): an unbounded read fails there with a MemoryError, so
# its refusal is missing, instead of filling the machine. Memory is bounded by construction, not measured.
ADDRESS_SPACE = 4 << 30
BOUNDED = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
from mmcore.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_bounded(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m mmcore ARGS` in a child whose address space is capped at ADDRESS_SPACE."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    environ.update(MMCORE_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **env)
    process = subprocess.Popen([sys.executable, "-c", BOUNDED, *args], cwd=ROOT, env=environ, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=240)  # a safety net only: the reader never blocks
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"mmcore {' '.join(args)} hung: {stderr[-2000:]}")
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def test_import_vectors_refuses_rows_naming_a_device_a_fifo_or_a_proc_file_within_a_capped_address_space(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "v.npy", np.random.default_rng(0).normal(size=(5, 8)))
    Image.new("RGB", (12, 12), (200, 20, 20)).save(folder / "red.png")
    os.mkfifo(folder / "pipe.png")
    # /proc/self/pagemap says it is 0 bytes long and reads as 8 bytes per page of the address space: gigabytes.
    (folder / "meta.csv").write_text("id,image\nzero,/dev/zero\npipe,pipe.png\nproc,/proc/self/pagemap\nred,red.png\nnone,\n")
    result = run_bounded(tmp_path / "data", "import-vectors", str(folder / "v.npy"), "--meta",
                                  str(folder / "meta.csv"), "--collection", "hostile", MMCORE_MAX_FILE_MB="16")
    assert result.returncode == 1, result.stderr  # imported, with problems
    assert "5 rows, 5 added, 0 already there, 1 images stored" in result.stdout
    out = result.stdout
    assert "problem: row 0: /dev/zero: not a regular file but a character device; only regular files are read" in out
    assert "problem: row 1: pipe.png: not a regular file but a FIFO (named pipe)" in out
    assert ("problem: row 2: /proc/self/pagemap: more than 16 MB came out of it (its size says 0 bytes), over the "
            "16 MB limit (raise MMCORE_MAX_FILE_MB to accept it)") in out
    items = Workspace(Settings(data_dir=tmp_path / "data")).store.open("hostile", "custom").get(["zero", "red"])
    assert "thumbnail" not in items[0]["metadata"] and "thumbnail" in items[1]["metadata"]


@pytest.mark.parametrize("which", ["vectors", "meta"])
def test_import_vectors_refuses_a_vectors_file_or_metadata_csv_that_is_not_a_regular_file(tmp_path, which):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "v.npy", np.ones((2, 4)))
    (folder / "meta.csv").write_text("id\na\nb\n")
    target = folder / ("v.npy" if which == "vectors" else "meta.csv")
    target.unlink()
    os.mkfifo(target)
    result = run_bounded(tmp_path / "data", "import-vectors", str(folder / "v.npy"), "--meta", str(folder / "meta.csv"),
                            "--collection", "c")
    assert result.returncode == 2 and f"{target}: not a regular file but a FIFO (named pipe)" in result.stderr


def test_a_npy_header_claiming_more_values_than_the_file_holds_is_refused(tmp_path, monkeypatch, capsys):
    """np.load allocates whatever the header claims before it reads: a 100-byte file could ask for terabytes."""
    path = tmp_path / "liar.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 768), }".ljust(117) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64)
    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path / "data"))
    assert main(["import-vectors", str(path), "--collection", "c"]) == 2
    assert "liar.npy: its header declares shape (1000000000000, 768) of float32" in capsys.readouterr().err


def test_a_parquet_file_that_decodes_past_the_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch, capsys):
    """Run-length encoding and compression make a few KB of Parquet into millions of values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"a": np.ones(3_000_000, dtype=np.float32), "b": np.ones(3_000_000, dtype=np.float32)}), path)
    assert path.stat().st_size < 64 * 1024
    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MMCORE_MAX_VECTORS_MB", "4")
    assert main(["import-vectors", str(path), "--collection", "c"]) == 2
    assert "bomb.parquet: decodes to 6,000,000 values, more than the 1,048,576" in capsys.readouterr().err


def test_ingest_names_a_fifo_and_a_link_to_dev_zero_and_adds_the_rest(tmp_path, monkeypatch, capsys, clip_dir, media):
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy(media["img.png"], album / "good.png")
    os.mkfifo(album / "pipe.png")
    (album / "zero.txt").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "named.jpg")
    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MMCORE_CLIP_MODEL", str(clip_dir))
    assert main(["ingest", str(album), str(tmp_path / "named.jpg"), "--json"]) == 1
    results = {r["name"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert results["album/good.png"]["status"] == "added"
    for name, kind in [("album/pipe.png", "a FIFO (named pipe)"), ("album/zero.txt", "a character device"),
                       ("named.jpg", "a FIFO (named pipe)")]:  # named: not "no such file or folder"
        assert results[name]["status"] == "failed"
        assert results[name]["reason"] == f"not a regular file but {kind}; only regular files are read"


@pytest.mark.parametrize("flag, path", [("--image", "/dev/zero"), ("--audio", "fifo")])
def test_search_by_a_device_or_a_fifo_is_refused_by_name(store, tmp_path, capsys, flag, path):
    if path == "fifo":
        path = str(tmp_path / "query.wav")
        os.mkfifo(path)
    assert main(["search", flag, path, "--collection", "ex"]) == 2
    assert f"{path}: not a regular file but" in capsys.readouterr().err


def test_media_paths_in_stored_metadata_never_lead_outside_the_media_folder(store):
    """A crafted (say, restored) store can name /dev/zero as a thumbnail: the pages would read whatever it names."""
    from mmcore.analysis.frame import analysis_frame
    from mmcore.files import stored_path

    ws = Workspace(Settings(data_dir=store))
    target = ws.store.open("ex", "custom")
    [a] = target.get(["a"])
    target.raw.update(ids=["b", "c"], metadatas=[{"thumbnail": "/dev/zero", "original": "../../../../../../etc/passwd"},
                                                 {"thumbnail": "thumbs/../../../../../../dev/zero"}])
    ws.close()
    hits = {h.id: h for h in search_like(Workspace(Settings(data_dir=store)), "d", "ex", k=3, space="custom")}
    assert hits["b"].thumbnail is hits["b"].original is hits["c"].thumbnail is None
    assert hits["a"].thumbnail == str(store / "media" / a["metadata"]["thumbnail"])
    assert main([*EXPORT, "--format", "json", "--out", "ex.json"]) == 0
    rows = {r["id"]: r for r in json.loads(Path("ex.json").read_text())}
    assert rows["b"]["thumbnail"] is rows["b"]["original"] is rows["c"]["thumbnail"] is None
    assert rows["a"]["thumbnail"] == hits["a"].thumbnail

    class Everything:  # an analysis that covers every item, for the table the Map, Clusters and Outliers pages show
        ids = ["a", "b", "c", "d"]
        xy = np.zeros((4, 2))
        labels = probabilities = outlier_scores = np.zeros(4)

        def stabilities(self, labels):
            return {}

    frame = analysis_frame(target, Everything(), media_root=ws.files.root).set_index("id")
    assert list(frame.loc[["b", "c"], "thumbnail"]) == ["", ""] and frame.loc["a", "thumbnail"] == hits["a"].thumbnail
    assert stored_path(store, "thumbs/ab/x.webp") == store / "thumbs/ab/x.webp"


# --- restore: the archive is bounded before anything is written ---------------------------------------------


def _manifest_tar(tar: tarfile.TarFile) -> None:
    body = json.dumps({"schema": 1, "written_by": "mmscope 0.1.0"}).encode()
    info = tarfile.TarInfo("mmscope-backup.json")
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))


def too_many_members(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        _manifest_tar(tar)
        for i in range(30):
            info = tarfile.TarInfo(f"data/media/f{i}.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


def huge_declared_size(path: Path) -> Path:
    """A member whose header says 2 TiB, with nothing after it: a reader that trusts it seeks or allocates."""
    raw = io.BytesIO()
    tar = tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT)
    _manifest_tar(tar)
    huge = tarfile.TarInfo("data/chroma/huge.bin")
    huge.size = 2 << 40
    path.write_bytes(gzip_bytes(raw.getvalue() + huge.tobuf(tarfile.PAX_FORMAT)))
    return path


def expands_past_the_cap(path: Path) -> Path:
    """3 x 600 KB of zeros in a few KB of gzip whose trailer claims 1,000 bytes uncompressed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        _manifest_tar(tar)
        for i in range(3):
            info = tarfile.TarInfo(f"data/media/zeros{i}.bin")
            info.size = 600_000
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    packed = gzip_bytes(raw.getvalue())
    path.write_bytes(packed[:-4] + struct.pack("<I", 1000))
    assert len(packed) < 20_000
    return path


def gzip_bytes(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


@pytest.mark.parametrize("make, env, refusal", [
    (too_many_members, {"MMCORE_MAX_RESTORE_FILES": "10"}, ["holds more than 10 files and folders (MMCORE_MAX_RESTORE_FILES)"]),
    (huge_declared_size, {}, ["unpacks to more than 262,144 MB (MMCORE_MAX_RESTORE_MB): its headers declare 2,199,023,25",
                              "bytes up to 'data/chroma/huge.bin'"]),  # the defaults protect
    (expands_past_the_cap, {"MMCORE_MAX_RESTORE_MB": "1"}, ["unpacks to more than 1 MB (MMCORE_MAX_RESTORE_MB): its headers "
                                                            "declare 1,200,", "bytes up to 'data/media/zeros1.bin'"]),
])
def test_restore_refuses_an_archive_past_its_limits_before_writing_anything(tmp_path, monkeypatch, capsys, make, env, refusal):
    archive = make(tmp_path / "crafted.tar.gz")
    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path / "target" / "data"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["restore", str(archive)]) == 2
    err = capsys.readouterr().err
    assert all(part in err for part in refusal), err
    assert [p.name for p in tmp_path.iterdir()] == ["crafted.tar.gz"], "nothing written, no staging folder left"


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_restore_refuses_an_archive_that_is_not_a_regular_file(tmp_path, monkeypatch, capsys, source):
    if source == "fifo":
        source = str(tmp_path / "backup.tar.gz")
        os.mkfifo(source)
    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path / "target"))
    assert main(["restore", source]) == 2
    assert f"{source}: not a regular file but" in capsys.readouterr().err
    assert not (tmp_path / "target").exists()


def test_unpacking_counts_the_bytes_it_writes_not_the_ones_the_headers_declared(tmp_path):
    """The second line of defence: were a header to lie past the scan, the bytes written are counted anyway."""
    from mmcore.backup import _unpack
    from mmcore.errors import MMError

    archive = expands_past_the_cap(tmp_path / "a.tar.gz")
    staging = tmp_path / "staging"
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.name.startswith("data/")]
        with pytest.raises(MMError, match="more than its headers declared"):
            _unpack(tar, members, staging, archive, max_bytes=1_000_000)
    written = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    assert 0 < written <= 1_000_000


# --- 3. the data dir's own files are hostile input too: a data dir may come from someone else ----------------
# Each case starts from a data dir made by the real code (import, analyze), replaces one of its files by a crafted
# one, and runs the real command in a child with a capped address space: a cache reads as a miss and is computed
# again, any other file is named in a clear error; never a MemoryError, a traceback or a hang.

BLOB_ITEMS = 40


@pytest.fixture
def analyzed(tmp_path, monkeypatch):
    """A data dir holding collection `ex` (40 vectors in two blobs, and `img` with a thumbnail), analyzed once so its
    vector and analysis caches, cluster names and journal folder exist; the CLI is pointed at it."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    centers = np.eye(2, 8) * 3
    blobs = [centers[i % 2] + rng.normal(size=8) * 0.2 for i in range(BLOB_ITEMS)]
    np.save(folder / "v.npy", np.vstack(blobs + [rng.normal(size=8)]))
    Image.new("RGB", (16, 16), (10, 200, 30)).save(folder / "green.png")
    (folder / "meta.csv").write_text("id,image\n" + "".join(f"i{i:02d},\n" for i in range(BLOB_ITEMS)) + "img,green.png\n")
    data_dir = tmp_path / "data"
    ws = Workspace(Settings(data_dir=data_dir))
    assert import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="ex").images == 1
    ws.close()
    for key in [k for k in os.environ if k.startswith("MMCORE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MMCORE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", "--collection", "ex"]) == 0
    assert list(data_dir.glob("cache/analysis/ex.custom/names-*.json")) and (data_dir / "journal").is_dir()
    return data_dir


IDS = sorted([f"i{i:02d}" for i in range(BLOB_ITEMS)] + ["img"])


def analyzed_ids(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return sorted(row["id"] for row in json.loads(result.stdout))


def lying_npy(path: Path, shape: tuple, dtype: str) -> None:
    """A .npy header claiming `shape` of `dtype`, followed by 64 bytes: np.load allocates what the header says."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".ljust(117) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64)


def replace_with(path: Path, how: str) -> None:
    """Put something hostile where `path` was: a FIFO, a link to /dev/zero, or 8 GB of zeros (a sparse file)."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "fifo":
        os.mkfifo(path)
    elif how == "dev zero":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as f:
            f.truncate(8 << 30)


def snapshot_dir(data_dir: Path) -> Path:
    [folder] = [p for p in (data_dir / "cache" / "vectors").glob("*/*") if not p.name.startswith(".")]
    return folder


def _many_rows(folder: Path) -> None:
    """A whole, well-formed snapshot of 1,000 items the collection doesn't have: more rows than it can hold."""
    for name in ("ids.npy", "writes.npy", "vectors.npy"):
        (folder / name).unlink()
    np.save(folder / "ids.npy", np.array([f"fake{i:04d}" for i in range(1000)]))
    np.save(folder / "writes.npy", np.array(["0:vector"] * 1000))
    np.save(folder / "vectors.npy", np.ones((1000, 8), dtype=np.float32))


@pytest.mark.parametrize("file, how", [
    ("ids.npy", "lying header"), ("vectors.npy", "fifo"), ("writes.npy", "dev zero"), ("vectors.npy", "too many rows"),
])
def test_a_crafted_vector_cache_is_read_from_the_store_again(analyzed, file, how):
    folder = snapshot_dir(analyzed)
    if how == "lying header":
        lying_npy(folder / file, (10**12,), "<U40")
    elif how == "too many rows":
        _many_rows(folder)
    else:
        replace_with(folder / file, how)
    if how == "lying header":  # the search by item with a filter reads the snapshot first
        result = run_bounded(analyzed, "search", "--like", "i00", "--collection", "ex", "--where", "modality=image", "--json")
        assert result.returncode == 0 and [hit["id"] for hit in json.loads(result.stdout)] == ["img"], result.stderr[-3000:]
    assert analyzed_ids(run_bounded(analyzed, "analyze", "--collection", "ex", "--refit", "--json")) == IDS
    folder = snapshot_dir(analyzed)  # saved again, whole
    assert sorted(np.load(folder / "ids.npy").tolist()) == IDS and np.load(folder / "vectors.npy").shape == (41, 8)


def _npz_with(path: Path, member: str, lie: int | None = None) -> None:
    """Rewrite the .npz `path` with its `member` deflated, declaring `lie` bytes uncompressed instead of its size:
    with a lie past 3.7 GB its .npy header claims that many values too (np.load allocates them first); a lie
    below its size makes it inflate past what it declares."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    target = f"{member}.npy"
    if lie > 1 << 30:
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({lie // 4 - 32},), }}".ljust(117) + "\n"
        members[target] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(4096)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(target).header_offset
    struct.pack_into("<I", data, local + 22, lie)  # the local header's uncompressed size
    central = data.index(b"PK\x01\x02")  # the central directory's entries, then ours by name
    while data[central + 46 : central + 46 + len(target)] != target.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, lie)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind, how", [
    ("result", "declares 3.75 GB"), ("result", "inflates past its size"), ("fit", "fifo"), ("result", "dev zero"),
])
def test_a_crafted_analysis_cache_is_computed_again_and_said_so(analyzed, kind, how):
    cache = analyzed / "cache" / "analysis" / "ex.custom"
    [result] = cache.glob("result-*.npz")
    [fit] = cache.glob("fit-*.npz")
    path = result if kind == "result" else fit
    if kind == "fit":
        result.unlink()  # so the fit is read: the new result is placed on it
    if how == "declares 3.75 GB":
        _npz_with(path, "xy", lie=0xF0000000)
    elif how == "inflates past its size":
        _npz_with(path, "xy", lie=100)
    else:
        replace_with(path, how)
    done = run_bounded(analyzed, "analyze", "--collection", "ex", "--json")
    assert analyzed_ids(done) == IDS
    assert f"Ignoring the cache file {path} (" in done.stderr and "; computing it again" in done.stderr, done.stderr[-3000:]
    from mmcore.safe_io import load_npz

    assert "__meta__" in load_npz(path, 64 << 20), "written again, whole"


@pytest.mark.parametrize("how", ["fifo", "torn"])
def test_damaged_cluster_names_are_made_again(analyzed, how):
    [names] = analyzed.glob("cache/analysis/ex.custom/names-*.json")
    if how == "fifo":
        replace_with(names, "fifo")
    else:
        names.write_text(names.read_text()[:5])
    assert analyzed_ids(run_bounded(analyzed, "analyze", "--collection", "ex", "--json")) == IDS
    assert isinstance(json.loads(names.read_text()), dict)


SEARCH = ("search", "--like", "i00", "--collection", "ex")


@pytest.mark.parametrize("file, how, command, message", [
    ("taxonomy/ex.custom.json", "fifo", "analyze", "is unreadable (not a regular file but a FIFO (named pipe)"),
    ("taxonomy/ex.custom.json", "dev zero", "analyze", "is unreadable (not a regular file but a character device"),
    ("taxonomy/ex.custom.json", "8 GB", "analyze", "is unreadable (the file is 8,192 MB, over the 256 MB limit for such a file)"),
    ("vocabulary.txt", "fifo", "analyze", "vocabulary.txt: not a regular file but a FIFO (named pipe)"),
    ("journal/0123.journal", "fifo", "search", "can't be used: not a regular file but a FIFO (named pipe)"),
    ("journal/0123.journal", "dev zero", "search", "can't be used: not a regular file but a character device"),
    ("journal/0123.journal", "8 GB", "search", "can't be used: it has a line longer than 256 MB"),
    ("mmscope.json", "fifo", "search", "mmscope.json can't be read (not a regular file but a FIFO (named pipe)"),
])
def test_a_damaged_data_dir_file_is_named_never_a_hang_or_a_memory_error(analyzed, file, how, command, message):
    replace_with(analyzed / file, how)
    args = ("analyze", "--collection", "ex") if command == "analyze" else SEARCH
    result = run_bounded(analyzed, *args)
    assert result.returncode == 2 and str(analyzed / file) in result.stderr and message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_check_reports_a_journal_that_is_not_one_instead_of_hanging(analyzed):
    replace_with(analyzed / "journal" / "0123.journal", "fifo")
    result = run_bounded(analyzed, "check", "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["kind"] == "journal" and "0123.journal can't be used: not a regular file but a FIFO" in problem["message"]


def test_a_journal_record_unlike_mmscopes_is_named(analyzed, capsys):
    (analyzed / "journal" / "0123.journal").write_text('{"begin": 1, "collection": "ex", "ids": {"custom": 5}}\n')
    assert main(list(SEARCH)) == 2
    assert "0123.journal can't be used: it holds a 'begin' record unlike mmscope's" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["link to a file of yours", "fifo"])
def test_the_write_lock_is_never_taken_through_a_link_or_a_fifo(analyzed, tmp_path, how):
    from mmcore.errors import StoreError

    lock = analyzed / "chroma" / ".mmscope.lock"
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious) if how != "fifo" else os.mkfifo(lock)
    ws = Workspace(Settings(data_dir=analyzed))
    with pytest.raises(StoreError, match=r"\.mmscope\.lock: not a regular file but a (symbolic link|FIFO).*not the lock file"):
        ws.store.open("ex", "custom").update_tags(["i00"], add=["x"])
    assert precious.read_text() == "mine"
    assert ws.store.open("ex", "custom").get(["i00"])[0]["metadata"].get("tags") in (None, [], "")


# --- the pages show stored media only through mmcore.files (ui.picture, ui.player) ---------------------------

CAPPED_CODE = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
from pathlib import Path
from mmcore.files import read_stored, read_thumbnail
root = Path(sys.argv[1])
print(read_thumbnail(root, sys.argv[2]) is None, read_stored(root, sys.argv[2], 1 << 30) is None)
"""


@pytest.mark.parametrize("how", ["fifo", "dev zero", "link outside the media folder", "not an image", "huge picture", "8 GB"])
def test_a_thumbnail_that_is_not_one_is_not_shown(analyzed, tmp_path, how):
    from mmcore.files import read_thumbnail

    [hit] = [h for h in search_like(Workspace(Settings(data_dir=analyzed)), "i00", "ex", k=50, space="custom") if h.id == "img"]
    thumbnail, media = Path(hit.thumbnail), analyzed / "media"
    assert read_thumbnail(media, thumbnail)[:4] == b"RIFF"  # the real one: WebP
    if how == "link outside the media folder":
        Image.new("RGB", (8, 8)).save(tmp_path / "private.png")
        thumbnail.unlink()
        thumbnail.symlink_to(tmp_path / "private.png")
    elif how == "not an image":
        thumbnail.write_bytes(b"<svg onload=alert(1)>")
    elif how == "huge picture":  # 30,000 x 30,000 pixels in a few KB: decoding it would take 2.7 GB
        Image.new("1", (30_000, 30_000)).save(thumbnail, format="PNG")
        assert thumbnail.stat().st_size < 1 << 20
    else:
        replace_with(thumbnail, how)
    child = subprocess.run([sys.executable, "-c", CAPPED_CODE, str(media), str(thumbnail)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    shown_as_picture, shown_as_original = child.stdout.split()
    assert shown_as_picture == "True"
    assert shown_as_original == str(how not in ("not an image", "huge picture"))  # as a file, those two are regular


def page_of_thumbnails():
    """The gallery the Map, Clusters and Outliers pages show, on collection `ex`."""
    import ui
    from mmcore.analysis.maps import analyze

    frame = ui.analysis_table(analyze(ui.workspace(), "ex", "custom"))
    ui.gallery(frame[frame["id"].isin(["img", "i00"])])


def _unblock(fifo: Path, after: float) -> None:
    """Open the FIFO for writing after a while, so that a page which opened it for reading fails instead of hanging."""
    time.sleep(after)
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader: nothing hangs
        pass


def test_the_gallery_shows_no_picture_for_a_thumbnail_that_is_a_fifo(analyzed):
    """Streamlit's st.image(path) opens the path and reads it whole: a FIFO hangs the page, /dev/zero fills the memory."""
    import streamlit as st
    from chromadb.api.client import SharedSystemClient
    from streamlit.testing.v1 import AppTest

    SharedSystemClient.clear_system_cache()
    st.cache_resource.clear()
    try:
        app = AppTest.from_function(page_of_thumbnails).run(timeout=60)
        assert not app.exception and len(app.get("image")) == 1, "the real thumbnail is shown"
        [hit] = [h for h in search_like(Workspace(Settings(data_dir=analyzed)), "i00", "ex", k=50, space="custom") if h.id == "img"]
        replace_with(Path(hit.thumbnail), "fifo")
        threading.Thread(target=_unblock, args=(Path(hit.thumbnail), 60), daemon=True).start()
        app = AppTest.from_function(page_of_thumbnails).run(timeout=90)
        assert not app.exception and len(app.get("image")) == 0 and len(app.caption) == 2, "both items, one picture less"
    finally:
        st.cache_resource.clear()
