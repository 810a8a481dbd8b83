"""`python -m mmcore backup | restore`: a whole data dir as one .tar.gz, and back.

A backup holds the data dir's write lock while it reads, so no process writes the embedded store meanwhile and the
copy is consistent. With a Chroma server the collections live on the server: the backup then holds the data dir
only (originals, thumbnails, analysis caches and names), and says so.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import Settings
from .datadir import LOCK_FILE, SCHEMA, check_schema, read_schema, write_lock
from .errors import MMError, NewerDataDir, NotFound
from .safe_io import open_regular, output_target, write_output

MANIFEST = "mmscope-backup.json"
ROOT = "data"  # every file of the data dir is under this folder in the archive
MAX_MANIFEST_BYTES = 1 << 20  # ours is a few hundred bytes; a bigger one is not ours and is not read whole


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    with_store: bool  # False: the collections are on a Chroma server, not in the archive


def backup(settings: Settings, out: Path, force: bool = False) -> BackupReport:
    """Write the data dir of `settings` to the archive `out` (.tar.gz), holding its write lock meanwhile. `out`
    may not lie inside the data dir and is replaced only with `force` (see `mmcore.safe_io.write_output`).

    Raises:
        StoreLocked: another process writes the embedded store.
        MMError: there is no data dir, or `out` lies inside it or exists and `force` is not given.
    """
    data_dir, out = settings.data_dir, Path(out)
    if not data_dir.is_dir():
        raise NotFound(f"There is no data dir {data_dir} to back up.")
    output_target(out, data_dir, force)  # before taking the lock: a refusal leaves a writer undisturbed
    with_store = not settings.chroma_host
    counts = [0, 0]  # files, bytes

    def write(f) -> None:
        with write_lock(data_dir) if with_store else nullcontext():
            counts[:] = _write_archive(settings, data_dir, f, with_store)

    write_output(out, data_dir, write, force)
    return BackupReport(out, counts[0], counts[1], with_store)


def _write_archive(settings: Settings, data_dir: Path, out, with_store: bool) -> tuple[int, int]:
    check_schema(data_dir)
    skip = {(data_dir / LOCK_FILE).resolve()}
    manifest = {"schema": int((read_schema(data_dir) or {"schema": SCHEMA})["schema"]), "written_by": f"mmscope {__version__}", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "store": "embedded" if with_store else f"Chroma server {settings.chroma_host}:{settings.chroma_port} (not included)"}
    files = size = 0
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        body = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(body), int(time.time())
        tar.addfile(info, io.BytesIO(body))
        for path in sorted(data_dir.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.resolve() in skip:
                continue
            tar.add(path, arcname=f"{ROOT}/{path.relative_to(data_dir).as_posix()}", recursive=False)
            files, size = files + 1, size + path.stat().st_size
    return files, size


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    files: int
    manifest: dict


def restore(archive: Path, data_dir: Path, force: bool = False, max_bytes: int = Settings.max_restore_bytes,
            max_files: int = Settings.max_restore_files) -> RestoreReport:
    """Unpack the backup `archive` as `data_dir`, which must be empty or missing unless `force` (then it is replaced).

    Every member is checked before anything is written: only files and folders under the archive's data folder
    (no absolute paths, no `..`, no links), at most `max_files` of them (MMCORE_MAX_RESTORE_FILES), and their
    declared sizes at most `max_bytes` in all (MMCORE_MAX_RESTORE_MB) and no more than the disk's free space. The
    headers are read one at a time and the first member past a limit stops the reading, so a crafted archive
    costs no more than the limits. The bytes actually unpacked are counted too, against the same limit. The
    restore is unpacked beside `data_dir` and then moved into place; a refusal leaves nothing behind.

    Raises:
        MMError: not an mmscope backup, an unsafe member, over a limit, or a non-empty `data_dir` without `force`.
        NewerDataDir: a newer mmscope made the backup.
        StoreLocked: with `force`, another process writes the data dir's store.
    """
    archive, data_dir = Path(archive), Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise MMError(f"{data_dir} is not empty; restore into a new data dir, or add --force to replace it.")
    with open_regular(archive) as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r:*") as tar:
                members = _members(tar, archive, max_bytes, max_files)
                manifest = _manifest(tar, members, archive)
                members = [m for m in members if m.name != MANIFEST]
                _check_room(data_dir, sum(m.size for m in members if m.isfile()), archive)
                data_dir.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
                try:
                    _unpack(tar, members, staging, archive, max_bytes)
                    unpacked = staging / ROOT
                    unpacked.mkdir(exist_ok=True)
                    if data_dir.exists():
                        with write_lock(data_dir):  # never replace a store another process is writing
                            os.replace(data_dir, staging / "replaced")
                    os.replace(unpacked, data_dir)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
            raise MMError(f"{archive} can't be read as a backup: {e}") from None
    files = sum(1 for m in members if m.isfile())
    return RestoreReport(data_dir, files, manifest)


def _members(tar: tarfile.TarFile, archive: Path, max_bytes: int, max_files: int) -> list[tarfile.TarInfo]:
    """The archive's members, checked one header at a time: refused at the first one that is unsafe or past a limit."""
    members, declared = [], 0
    for m in tar:
        if m.name != MANIFEST:
            parts = Path(m.name).parts
            if Path(m.name).is_absolute() or ".." in parts or parts[:1] != (ROOT,) or not (m.isfile() or m.isdir()):
                raise MMError(f"{archive} holds {m.name!r}, which is not a file under {ROOT}/: refusing to restore it.")
        members.append(m)
        declared += m.size if m.isfile() else 0
        if len(members) > max_files:
            raise MMError(f"{archive} holds more than {max_files:,} files and folders (MMCORE_MAX_RESTORE_FILES): "
                          "refusing to restore it; nothing was written. Raise the limit if this backup is yours.")
        if declared > max_bytes:
            raise MMError(f"{archive} unpacks to more than {max_bytes / 2**20:,.0f} MB (MMCORE_MAX_RESTORE_MB): its headers "
                          f"declare {declared:,} bytes up to {m.name!r}. Refusing to restore it; nothing was written. "
                          "Raise the limit if this backup is yours.")
    return members


def _check_room(data_dir: Path, needed: int, archive: Path) -> None:
    existing = next(p for p in (data_dir.absolute(), *data_dir.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise MMError(f"{archive} unpacks to {needed / 2**20:,.0f} MB but only {free / 2**20:,.0f} MB are free at "
                      f"{existing}: make room, or restore somewhere else; nothing was written.")


def _unpack(tar: tarfile.TarFile, members: list[tarfile.TarInfo], staging: Path, archive: Path, max_bytes: int) -> None:
    """Write the (checked) members under `staging`, counting the bytes written against `max_bytes` whatever the
    headers declared."""
    written = 0
    for m in members:
        target = staging.joinpath(*Path(m.name).parts)
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(m)
        with open(target, "xb") as out:  # "x": a member named twice is refused, never written over
            while block := source.read(1 << 20):
                written += len(block)
                if written > max_bytes:
                    raise MMError(f"{archive} unpacks to more than {max_bytes / 2**20:,.0f} MB (MMCORE_MAX_RESTORE_MB), "
                                  "more than its headers declared: refusing to restore it; nothing was kept.")
                out.write(block)
        try:
            os.utime(target, (m.mtime, m.mtime))
        except (OverflowError, ValueError, OSError):
            pass  # a crafted date: the file keeps today's


def _manifest(tar: tarfile.TarFile, members: list[tarfile.TarInfo], archive: Path) -> dict:
    try:
        member = next(m for m in members if m.name == MANIFEST and m.isfile())
        body = tar.extractfile(member).read(MAX_MANIFEST_BYTES + 1)
        if len(body) > MAX_MANIFEST_BYTES:
            raise ValueError("too long")
        manifest = json.loads(body)
        schema = int(manifest["schema"])
    except (StopIteration, KeyError, ValueError, TypeError, AttributeError):
        raise MMError(f"{archive} is not an mmscope backup (it has no readable {MANIFEST}).") from None
    if schema > SCHEMA:
        raise NewerDataDir(f"{archive} was made by {manifest.get('written_by', 'a newer mmscope')} (data schema {schema}); "
                           f"this is mmscope {__version__} (data schema {SCHEMA}): upgrade mmscope to restore it.")
    return manifest
