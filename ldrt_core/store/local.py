"""`LocalStore`: the artifact store as a folder, the embedded default.

Objects are plain files under the root. A write goes to a temp file in `<root>/.ldrt-tmp`, is
fsynced, then renamed over the key (linked to it when the key must be free: of two writers only
one wins; where the filesystem has no hard links, the key is looked at again just before the
rename, which leaves a writer in between that instant a chance to be replaced), and the folder is
fsynced: a reader never sees a partial file, and a crash leaves the old object or the new one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from ldrt_core.errors import ObjectNotFoundError, StoreError, StoreUnavailableError
from ldrt_core.store.base import (
    CHUNK,
    RESERVED_PREFIX,
    ArtifactStore,
    ObjectInfo,
    Staged,
    conflict,
)

# What os.link raises where the filesystem has no hard links (vfat, exFAT, SMB, some FUSE).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


class LocalStore(ArtifactStore):
    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self._tmp = self.root / f"{RESERVED_PREFIX}-tmp"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _staging_dir(self) -> Path:
        return self._tmp

    def _write(self, key: str, staged: Staged, content_type: str, *, exclusive: bool) -> None:
        target = self._path(key)
        made: list[Path] = []  # temp files of this call, removed whatever happens
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if staged.owned and staged.path is not None:
                _fsync(staged.path)  # a private file on this filesystem, spooled unsynced
                source = staged.path
            else:
                self._tmp.mkdir(parents=True, exist_ok=True)
                source = _copy(staged, self._tmp, made)
            try:
                self._place(key, source, target, staged.sha256, exclusive)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # The key's folder is on another disk (a folder linked in): a rename or a link
                # cannot cross, so the bytes are staged again beside the key.
                source = _copy(staged, target.parent, made)
                self._place(key, source, target, staged.sha256, exclusive)
            _fsync(target.parent)  # the rename itself survives a crash
        except OSError as exc:
            raise StoreError(
                f"cannot write {key!r} under {self.root}: {exc.strerror or exc}"
            ) from exc
        finally:
            for path in made:
                path.unlink(missing_ok=True)

    def _place(self, key: str, source: Path, target: Path, sha256: str, exclusive: bool) -> None:
        """Make `target` hold `source`'s bytes, in one step a reader cannot see half of.

        `exclusive` (the key was free): a hard link, which fails if another writer got there
        first (a rename would replace their bytes); theirs are then kept when they are ours,
        and a conflict otherwise. Where the filesystem has no hard links (vfat, some network
        mounts), the key is looked at again just before the rename instead: best effort, as a
        writer between the look and the rename is replaced (content keys are safe: same key,
        same bytes)."""
        if not exclusive:
            os.replace(source, target)
            return
        try:
            os.link(source, target)
            return
        except FileExistsError:
            current = self._info(key)
            if current is None:
                raise  # not a file: a folder is in the way
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            current = self._info(key)
            if current is None:
                os.replace(source, target)
                return
        if current.sha256 != sha256:
            raise conflict(self.url, key, current.sha256, sha256) from None

    def _exists(self, key: str) -> bool:  # without hashing the file, as `_info` must
        return self._path(key).is_file()

    def _size(self, key: str) -> int | None:  # one stat(), where `_info` hashes the file
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def _info(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest())

    def _open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object at {key!r} in {self.url}") from None

    def _keys(self, prefix: str) -> Iterator[str]:
        # Walk only the folder the prefix names (or its parent, for a partial last segment).
        base = prefix if prefix.endswith("/") or not prefix else prefix.rpartition("/")[0]
        start = self._path(base.rstrip("/")) if base.rstrip("/") else self.root
        if not start.is_dir():
            return iter(())
        found: list[str] = []
        # A folder linked in from elsewhere (moved to another disk) holds keys like any other;
        # a link to a folder of the store itself would list its keys twice, and is not walked.
        inside = os.path.realpath(self.root)
        seen: set[tuple[int, int]] = set()  # and links among outside folders: each walked once
        for dirpath, dirnames, filenames in os.walk(start, followlinks=True):
            folder = os.stat(dirpath)
            if (folder.st_dev, folder.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((folder.st_dev, folder.st_ino))
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(RESERVED_PREFIX) and not _alias(Path(dirpath, d), inside)
            ]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix) and not name.startswith(RESERVED_PREFIX):
                    found.append(key)
        return iter(sorted(found))

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _url(self, key: str, expires: timedelta) -> str:
        return self._path(key).as_uri()

    def check(self) -> str:
        existing = self.root
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise StoreUnavailableError(
                f"local store {self.root}: {existing} is not a writable folder"
            )
        free = shutil.disk_usage(existing).free / 2**30
        state = "exists" if existing == self.root else "will be created"
        return f"folder {self.root} ({state}, writable, {free:.1f} GiB free)"


def _copy(staged: Staged, folder: Path, made: list[Path]) -> Path:
    """The staged bytes in a new private file in `folder` (its name is reserved: no listing
    shows it), fsynced."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{RESERVED_PREFIX}-put-")
    made.append(Path(name))
    with os.fdopen(fd, "wb") as out, staged.open() as src:
        shutil.copyfileobj(src, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    return Path(name)


def _fsync(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries, to the disk. Some filesystems cannot fsync
    a folder (EINVAL, EBADF: some network and FUSE mounts); the file is in place, so that is
    not a failed write (PostgreSQL decides the same)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (path.is_dir() and exc.errno in (errno.EINVAL, errno.EBADF)):
            raise
    finally:
        os.close(fd)


def _alias(folder: Path, root: str) -> bool:
    """Whether `folder` is a link to a folder inside `root`."""
    if not folder.is_symlink():
        return False
    target = os.path.realpath(folder)
    return target == root or target.startswith(root + os.sep)
