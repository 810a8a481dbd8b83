"""Ingest on a Ray cluster: a real `ray start --head` (2 CPUs, token authentication) on localhost, a real
`chroma run`, and `python -m mmcore ingest --ray ADDRESS` in a subprocess. Neither the cluster's processes nor
the driver run from the repository or with it on the cluster's PYTHONPATH, so the workers can only import the
mmcore the driver ships them, as on a cluster of other machines."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import media_factory as mf
from browser import free_port
from media_audio import make_wav
from media_pdf import make_pdf
from mmcore.config import Settings
from mmcore.ingest import SourceFile, ingest
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_hex(32)  # the cluster's own, so the test neither needs nor touches ~/.ray/auth_token
_SESSIONS: dict[str, int] = {}  # cluster address -> the session id of its processes
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster started as a person would (`ray start --head --block`), in a session of its own
    that is stopped, every process of it, afterwards. Yields its address."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths live under it
    port = free_port()
    ports = {flag: str(free_port()) for flag in ("--ray-client-server-port", "--node-manager-port", "--object-manager-port",
                                                 "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                                 "--runtime-env-agent-port", "--metrics-export-port")}
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
               "--disable-usage-stats", "--temp-dir", str(temp), *[x for kv in ports.items() for x in kv]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("MMCORE_", "RAY_"))}
    log_path = temp / "ray-start.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=temp, env={**env, **RAY_ENV}, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log_path.read_text():
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        _SESSIONS[f"127.0.0.1:{port}"] = process.pid
        yield f"127.0.0.1:{port}"
    finally:
        _stop_session(process)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_session(process: subprocess.Popen) -> None:
    """SIGTERM to `ray start`, which stops the processes it started; then SIGKILL to any left of its session."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.time() + 15
    while _session_pids(process.pid) and time.time() < deadline:
        time.sleep(0.3)
    left = {pid: _command(pid) for pid in _session_pids(process.pid)}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"Ray processes outlived `ray start`'s SIGTERM: {left}"


def _session_pids(sid: int) -> list[int]:
    """The live (not zombie) processes of session `sid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return pids


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m mmcore ARGS` run from `cwd`, not the repository: Ray adds the driver's folder to its workers' path."""
    return subprocess.run([sys.executable, "-m", "mmcore", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_ingest_on_a_ray_cluster_stores_what_a_local_ingest_stores(tmp_path, ray_cluster, server, clip_dir, clap_dir, media):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("img.jpg", "img.png", "long.txt", "table.csv"):
        shutil.copy(media[name], folder / name)
    (folder / "doc.pdf").write_bytes(make_pdf(["First page about tides and harbours.", "Second page, mackerel."],
                                              colours=[(200, 30, 30), None]))
    (folder / "tone.wav").write_bytes(make_wav(2.5, rate=16_000, freqs=440.0))
    (folder / "bad.png").write_bytes(b"this is text, not a picture")
    (folder / "captions.csv").write_text("image,caption\nimg.jpg,a red square\nimg.png,a blue square\ngone.jpg,not here\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMCORE_", "RAY_"))}
    env.update(RAY_ENV, MMCORE_DATA_DIR=str(tmp_path / "ray-data"), MMCORE_CHROMA_HOST="127.0.0.1",
               MMCORE_CHROMA_PORT=str(server), MMCORE_CLIP_MODEL=str(clip_dir), MMCORE_CLAP_MODEL=str(clap_dir),
               MMCORE_BATCH_SIZE="2", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")

    first = run_cli(["ingest", str(folder), "--collection", "onray", "--ray", ray_cluster, "--ray-cpus", "1", "--csv-rows",
                     "--json"], env, tmp_path)
    assert first.returncode == 1, first.stderr  # one file failed
    report = json.loads(first.stdout)
    status = {r["name"]: (r["status"], r["reason"]) for r in report["results"]}
    assert status.pop("in/bad.png") == ("failed", "not a readable image (the content is not JPEG, PNG, WebP, GIF, BMP or TIFF)")
    assert {s for s, _ in status.values()} == {"added"} and len(status) == 7
    workers = report["workers"]
    # Two 1-CPU workers fit the 2-CPU cluster; on a loaded machine one may do it all before the other is ready.
    assert 1 <= len(workers) <= 2 and sum(w["files"] for w in workers) == 7, "the workers embedded every readable file"

    # The same files ingested here, with the same models, into another collection and data dir.
    ws = Workspace(Settings(data_dir=tmp_path / "local-data", models={"clip": str(clip_dir), "clap": str(clap_dir)},
                            chroma_host="127.0.0.1", chroma_port=server, batch_size=2))
    local = ingest(ws, [SourceFile(f"in/{p.name}", path=p) for p in sorted(folder.iterdir())], collection="here", csv_rows=True)
    assert {r.name: r.items for r in local.results if r.status == "added"} == \
        {r["name"]: r["items"] for r in report["results"] if r["status"] == "added"}
    for space in ("clip", "clap"):
        on_ray, here = (ws.store.open(name, space).raw.get(include=["embeddings", "metadatas", "documents"])
                        for name in ("onray", "here"))
        assert sorted(on_ray["ids"]) == sorted(here["ids"]) and on_ray["ids"], space
        a, b = (dict(zip(got["ids"], zip(got["embeddings"], got["metadatas"], got["documents"]))) for got in (on_ray, here))
        for item_id, (vector, meta, document) in a.items():
            other_vector, other_meta, other_document = b[item_id]
            np.testing.assert_allclose(vector, other_vector, atol=1e-5, err_msg=item_id)
            assert {k: v for k, v in meta.items() if k != "added_at"} == {k: v for k, v in other_meta.items() if k != "added_at"}
            assert document == other_document
            for key in ("original", "thumbnail"):  # stored by the driver, the same bytes a local ingest stores
                if key in meta:
                    assert (tmp_path / "ray-data/media" / meta[key]).read_bytes() == \
                        (tmp_path / "local-data/media" / meta[key]).read_bytes(), (item_id, key)
    modalities = {m["modality"] for m in ws.store.open("onray", "clip").raw.get(include=["metadatas"])["metadatas"]}
    assert modalities == {"image", "text", "page"} and {m["modality"] for m in on_ray["metadatas"]} == {"audio"}
    paired = {m["pair_source"] for m in ws.store.open("onray", "clip").raw.get(include=["metadatas"])["metadatas"] if "pair_of" in m}
    assert paired == {"in/img.jpg", "in/img.png"}, "the captions found their images, embedded by the workers"

    # Again, without the bad file: everything is known, so nothing goes to the cluster.
    (folder / "bad.png").unlink()
    second = run_cli(["ingest", str(folder), "--collection", "onray", "--ray", ray_cluster, "--csv-rows"], env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "added 0 files (0 items), skipped 7, failed 0" in second.stdout
    assert "[7/7] skipped" in second.stderr, "progress as for a local ingest"
    assert "Ray:" not in second.stderr, "no worker started for files already in the collection"
    assert ws.store.open("onray", "clip").count() == ws.store.open("here", "clip").count()


def test_files_of_a_worker_that_dies_go_to_the_others(tmp_path, ray_cluster, server, clip_dir):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(80):  # enough that both workers have calls in flight when one is killed
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (folder / f"p{i:02}.png").write_bytes(mf.encode(mf.picture((24 + i % 40, 30 + i // 40), colour, "stripes"), "PNG"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMCORE_", "RAY_"))}
    env.update(RAY_ENV, MMCORE_DATA_DIR=str(tmp_path / "data"), MMCORE_CHROMA_HOST="127.0.0.1", MMCORE_CHROMA_PORT=str(server),
               MMCORE_CLIP_MODEL=str(clip_dir), MMCORE_BATCH_SIZE="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    process = subprocess.Popen([sys.executable, "-m", "mmcore", "ingest", str(folder), "--collection", "survivor",
                                "--ray", ray_cluster, "--ray-cpus", "1"], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "worker 2 ready" in line:
            break
    else:
        pytest.fail("the run ended before its second worker was ready:\n" + "".join(lines))
    workers = [pid for pid in _session_pids(_SESSIONS[ray_cluster]) if _command(pid).startswith("ray::_Worker")]
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)  # one of the two workers this run started, as if its node were lost
    out, err = process.communicate(timeout=300)
    err = "".join(lines) + err
    assert process.returncode == 0, err
    assert "Ray: a worker died" in err
    assert "added 80 files (80 items), skipped 0, failed 0" in out
    assert "Ray workers: 2: " in out and out.count("(died)") == 1, "the survivor did the rest"
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, chroma_host="127.0.0.1", chroma_port=server))
    assert ws.store.open("survivor", "clip").count() == 80


class Interrupted(BaseException):
    """What Ctrl-C does to a local ingest: stops it from inside the model."""


def test_a_big_file_a_stopped_local_ingest_left_partly_in_is_completed_on_ray(tmp_path, monkeypatch, ray_cluster, server,
                                                                               clip_dir):
    import mmcore.ingest
    from mmcore.journal import journal_dir, partial_files

    big = tmp_path / "big.csv"
    big.write_text("n,note\n" + "".join(f"{i},a note about tide {i} and harbour {i * 7 % 13}\n" for i in range(600)))
    settings = Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, chroma_host="127.0.0.1",
                        chroma_port=server, batch_size=4)
    ws = Workspace(settings)
    space, calls = ws.space("clip"), []
    real = space.embed_texts

    def embed_texts(texts):  # the 70th batch of 4 is never embedded: groups of 100 items, 2 of them written
        calls.append(len(texts))
        if len(calls) >= 70:
            raise Interrupted()
        return real(texts)

    with monkeypatch.context() as patch:
        patch.setattr(mmcore.ingest, "GROUP_ITEMS", 100)
        patch.setattr(space, "embed_texts", embed_texts)
        with pytest.raises(Interrupted):
            ingest(ws, [SourceFile(big.name, path=big)], collection="big", csv_rows=True)
    assert ws.store.open("big", "clip").count() == 200 and partial_files(journal_dir(settings.data_dir))[0].items == 200

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMCORE_", "RAY_"))}
    env.update(RAY_ENV, MMCORE_DATA_DIR=str(tmp_path / "data"), MMCORE_CHROMA_HOST="127.0.0.1", MMCORE_CHROMA_PORT=str(server),
               MMCORE_CLIP_MODEL=str(clip_dir), MMCORE_BATCH_SIZE="4", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    done = run_cli(["ingest", str(big), "--collection", "big", "--ray", ray_cluster, "--ray-cpus", "1", "--csv-rows", "--json"],
                   env, tmp_path)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["results"]
    assert (result["status"], result["items"]) == ("added", 600)
    assert any("200 of its items were in already" in note for note in result["notes"]), result["notes"]
    assert not partial_files(journal_dir(settings.data_dir)), "the file is whole: its record is gone"
    clean = ingest(ws, [SourceFile(big.name, path=big)], collection="clean", csv_rows=True)
    assert [(r.status, r.items) for r in clean.results] == [("added", 600)]
    assert sorted(ws.store.open("big", "clip").raw.get()["ids"]) == sorted(ws.store.open("clean", "clip").raw.get()["ids"]), \
        "the same items as one uninterrupted ingest, none twice"
