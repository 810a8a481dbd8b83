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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import Settings
from .datadir import LOCK_FILE, SCHEMA, check_schema, read_schema, write_lock
from .errors import MMError, NewerDataDir, NotFound

MANIFEST = "mmscope-backup.json"
ROOT = "data"  # every file of the data dir is under this folder in the archive


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    with_store: bool  # False: the collections are on a Chroma server, not in the archive


def backup(settings: Settings, out: Path) -> BackupReport:
    """Write the data dir of `settings` to the new archive `out` (.tar.gz), holding its write lock meanwhile.

    Raises:
        StoreLocked: another process writes the embedded store.
        MMError: there is no data dir, or `out` exists or lies inside it.
    """
    data_dir, out = settings.data_dir, Path(out)
    if not data_dir.is_dir():
        raise NotFound(f"There is no data dir {data_dir} to back up.")
    if out.exists():
        raise MMError(f"{out} exists already; name a new file.")
    if out.resolve().is_relative_to(data_dir.resolve()):
        raise MMError(f"{out} is inside the data dir {data_dir}; write the backup somewhere else.")
    with_store = not settings.chroma_host
    with write_lock(data_dir) if with_store else nullcontext():
        return _write_archive(settings, data_dir, out, with_store)


def _write_archive(settings: Settings, data_dir: Path, out: Path, with_store: bool) -> BackupReport:
    check_schema(data_dir)
    skip = {(data_dir / LOCK_FILE).resolve()}
    manifest = {"schema": int((read_schema(data_dir) or {"schema": SCHEMA})["schema"]), "written_by": f"mmscope {__version__}", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "store": "embedded" if with_store else f"Chroma server {settings.chroma_host}:{settings.chroma_port} (not included)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    files = size = 0
    try:
        with tarfile.open(partial, "w:gz") as tar:
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(body), int(time.time())
            tar.addfile(info, io.BytesIO(body))
            for path in sorted(data_dir.rglob("*")):
                if path.is_symlink() or not path.is_file() or path.resolve() in skip:
                    continue
                tar.add(path, arcname=f"{ROOT}/{path.relative_to(data_dir).as_posix()}", recursive=False)
                files, size = files + 1, size + path.stat().st_size
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return BackupReport(out, files, size, with_store)


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    files: int
    manifest: dict


def restore(archive: Path, data_dir: Path, force: bool = False) -> RestoreReport:
    """Unpack the backup `archive` as `data_dir`, which must be empty or missing unless `force` (then it is replaced).

    Member paths are checked before anything is written: only files and folders under the archive's data folder
    (no absolute paths, no `..`, no links). The restore is unpacked beside `data_dir` and then moved into place.

    Raises:
        MMError: not an mmscope backup, an unsafe member, or a non-empty `data_dir` without `force`.
        NewerDataDir: a newer mmscope made the backup.
        StoreLocked: with `force`, another process writes the data dir's store.
    """
    archive, data_dir = Path(archive), Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise MMError(f"{data_dir} is not empty; restore into a new data dir, or add --force to replace it.")
    try:
        tar = tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise MMError(f"{archive} can't be read as a backup: {e}") from None
    with tar:
        manifest = _manifest(tar, archive)
        members = [m for m in tar.getmembers() if m.name != MANIFEST]
        for m in members:
            parts = Path(m.name).parts
            if Path(m.name).is_absolute() or ".." in parts or parts[:1] != (ROOT,) or not (m.isfile() or m.isdir()):
                raise MMError(f"{archive} holds {m.name!r}, which is not a file under {ROOT}/: refusing to restore it.")
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
        try:
            tar.extractall(staging, members=members, filter="data")
            unpacked = staging / ROOT
            unpacked.mkdir(exist_ok=True)
            if data_dir.exists():
                with write_lock(data_dir):  # never replace a store another process is writing
                    os.replace(data_dir, staging / "replaced")
            os.replace(unpacked, data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    files = sum(1 for m in members if m.isfile())
    return RestoreReport(data_dir, files, manifest)


def _manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    try:
        member = tar.getmember(MANIFEST)
        manifest = json.loads(tar.extractfile(member).read())
        schema = int(manifest["schema"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise MMError(f"{archive} is not an mmscope backup (it has no readable {MANIFEST}).") from None
    if schema > SCHEMA:
        raise NewerDataDir(f"{archive} was made by {manifest.get('written_by', 'a newer mmscope')} (data schema {schema}); "
                           f"this is mmscope {__version__} (data schema {SCHEMA}): upgrade mmscope to restore it.")
    return manifest
