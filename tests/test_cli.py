"""`python -m mmcore` as a real subprocess, the way people and scripts run it.

Each run spends most of its time importing torch, transformers and chromadb, so the runs are few and started
together: one ingest first, then the queries at once, each on its own copy of the ingested data dir (an
embedded Chroma store must not be opened by several processes at the same time).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import media_factory as mf

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180


def cli_env(data_dir: Path, model: Path | str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(data_dir), MMCORE_CLIP_MODEL=str(model), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    return env


def without_model(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "MMCORE_CLIP_MODEL"}


def run_together(runs: dict[str, tuple[list[str], dict[str, str]]], cwd: Path) -> dict[str, subprocess.CompletedProcess]:
    """Start every `python -m mmcore ARGS` at once; wait for all; their results by key."""
    started = {
        key: (args, subprocess.Popen([sys.executable, "-m", "mmcore", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for key, (args, env) in runs.items()
    }
    done = {}
    for key, (args, process) in started.items():
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        done[key] = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    return done


def copy_of(data_dir: Path, name: str) -> Path:
    copy = data_dir.parent / name
    shutil.copytree(data_dir, copy)
    return copy


def image_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32] + ":image"


@pytest.fixture(scope="module")
def cli(tmp_path_factory, clip_dir, media):
    """Every CLI run of this module, by key, plus what the tests need to check them."""
    base = tmp_path_factory.mktemp("cli")
    folder = media["img.jpg"].parent  # the standard set: 6 images, long.txt, table.csv
    data = base / "data"

    bad = base / "bad"
    bad.mkdir()
    (bad / "fine.png").write_bytes(mf.encode(mf.picture((24, 24), (5, 150, 90), "cross"), "PNG"))
    (bad / "cut.jpg").write_bytes(mf.truncated_jpeg())
    (bad / "fake.png").write_bytes(mf.elf_bytes())

    first = run_together({
        "ingest": (["ingest", str(folder)], cli_env(data, clip_dir)),
        "ingest_bad": (["ingest", str(bad / "fine.png"), str(bad / "cut.jpg"), str(bad / "fake.png")],
                       cli_env(base / "data-bad", clip_dir)),
        "no_model": (["ingest", str(folder)], cli_env(base / "data-none", base / "no-such-model")),
    }, cwd=base)
    assert first["ingest"].returncode == 0, first["ingest"].stderr

    like_id = image_id(media["img.png"])
    second = run_together({
        "text": (["search", "--text", "harbour tide tables", "-k", "50", "--json"], cli_env(copy_of(data, "d-text"), clip_dir)),
        "image": (["search", "--image", str(media["img.gif"]), "-k", "3", "--json"], cli_env(copy_of(data, "d-image"), clip_dir)),
        "like": (["search", "--like", like_id, "-k", "50", "--where", "modality=text", "--json"],
                 cli_env(copy_of(data, "d-like"), clip_dir)),
        "info": (["info", "--json"], cli_env(data, clip_dir)),
        "text_human": (["search", "--text", "harbour tide tables", "-k", "2"], cli_env(copy_of(data, "d-text-human"), clip_dir)),
        "text_all": (["search", "--text", "harbour tide tables", "-k", "3", "--all"], cli_env(copy_of(data, "d-text-all"), clip_dir)),
        "recorded_model": (["search", "--text", "harbour tide tables", "-k", "2", "--json"],
                           without_model(cli_env(copy_of(data, "d-recorded"), clip_dir))),
    }, cwd=base)
    return {**first, **second, "like_id": like_id, "folder": folder}


def hits_of(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert isinstance(hits, list)
    return hits


def test_ingest_folder_succeeds_with_a_summary(cli):
    result = cli["ingest"]
    assert result.returncode == 0
    assert "added 8 files" in result.stdout
    assert "failed 0" in result.stdout
    # progress goes to stderr, one line per file
    assert result.stderr.count("added ") == 8 and "set/long.txt" in result.stderr


def test_ingest_with_bad_files_exits_1_naming_them(cli):
    result = cli["ingest_bad"]
    assert result.returncode == 1
    assert "added 1 files" in result.stdout and "failed 2" in result.stdout
    lines = result.stdout.splitlines()
    cut = next(line for line in lines if "cut.jpg" in line)
    assert "failed" in cut and ("truncated" in cut or "corrupt" in cut)
    fake = next(line for line in lines if "fake.png" in line)
    assert "failed" in fake and "not a readable image" in fake
    assert "Traceback" not in result.stderr


def test_search_text_json_has_every_field(cli):
    hits = hits_of(cli["text"])
    assert len(hits) == 6 + len({h["id"] for h in hits if h["modality"] == "text"})  # everything came back
    assert len({h["id"] for h in hits}) == len(hits)
    for hit in hits:
        assert {"id", "score", "modality", "source", "locator", "metadata", "thumbnail"} <= set(hit)
        assert isinstance(hit["score"], float) and -1.0001 <= hit["score"] <= 1.0001
        assert hit["source"].startswith("set/") and hit["metadata"]["source"] == hit["source"]
        if hit["modality"] == "image":
            assert Path(hit["thumbnail"]).is_file()
            assert hit["locator"] == {}
        else:
            assert hit["thumbnail"] is None
            assert set(hit["locator"]) >= {"char_start", "char_end"}
    kinds = [h["modality"] for h in hits]
    assert kinds == sorted(kinds, key=["image", "text"].index)  # one section per kind, as on the Search page
    for kind in ("image", "text"):
        scores = [h["score"] for h in hits if h["modality"] == kind]
        assert scores == sorted(scores, reverse=True)
    assert cli["like_id"] in {h["id"] for h in hits}


def test_search_text_ranks_each_kind_on_its_own_and_all_fuses_them_by_rank(cli):
    """A text query scores higher against texts than against images: -k 2 gives the best 2 of each kind,
    so the images are not buried; --all prints the fused rank score it sorted by."""
    lines = cli["text_human"].stdout.splitlines()
    assert cli["text_human"].returncode == 0, cli["text_human"].stderr
    assert lines[0] == "image (2)" and lines[3] == "text (2)" and len(lines) == 6
    fused = cli["text_all"].stdout.splitlines()
    assert cli["text_all"].returncode == 0, cli["text_all"].stderr
    assert fused[0] == "all media, fused by rank (3)"
    scores = [float(line.split("fused ")[1].split()[0]) for line in fused[1:]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert scores[0] == scores[1] == round(1 / 61, 4)  # the first of each kind: 1 / (60 + rank 1)


def test_search_image_finds_that_file_first(cli):
    hits = hits_of(cli["image"])
    assert [h["modality"] for h in hits] == ["image"] * 3 + ["text"] * 3  # the best 3 of each kind
    assert hits[0]["source"] == "set/img.gif" and hits[0]["modality"] == "image"
    assert hits[0]["score"] > 0.999
    assert Path(hits[0]["thumbnail"]).is_file()


def test_search_like_with_where_gives_other_text_items(cli):
    hits = hits_of(cli["like"])
    assert hits, "expected text hits"
    assert {h["modality"] for h in hits} == {"text"}
    assert cli["like_id"] not in {h["id"] for h in hits}
    assert {h["source"] for h in hits} == {"set/long.txt", "set/table.csv"}


def test_a_collection_made_with_a_model_folder_needs_no_variable_afterwards(cli, clip_dir):
    result = cli["recorded_model"]
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 4  # the best 2 images and 2 texts, as with MMCORE_CLIP_MODEL set
    assert f"using the CLIP model that made collection 'default': {Path(clip_dir).resolve()}" in result.stderr
    assert "MMCORE_CLIP_MODEL is not set" in result.stderr


def test_info_json_lists_the_collection(cli, clip_dir):
    result = cli["info"]
    assert result.returncode == 0, result.stderr
    [collection] = json.loads(result.stdout)
    assert collection["collection"] == "default"
    assert collection["space"] == "clip"
    assert collection["model"] == str(Path(clip_dir).resolve())
    assert collection["dimension"] == 16
    text_items = len([h for h in hits_of(cli["text"]) if h["modality"] == "text"])
    assert collection["items"] == 6 + text_items


def test_a_missing_model_fails_the_files_that_need_it_by_name_with_the_reason_not_a_traceback(cli):
    result = cli["no_model"]
    assert result.returncode == 1
    assert "added 0 files" in result.stdout and "failed 8" in result.stdout
    assert "MMCORE_CLIP_MODEL" in result.stdout and "no-such-model" in result.stdout
    assert "set/long.txt" in result.stdout and "set/img.jpg" in result.stdout
    assert result.stderr.count("failed ") == 8, "each file is reported as it is refused"
    assert "Traceback" not in result.stderr
