"""`LocalStore`: the artifact store as a folder, the embedded default.

Objects are plain files under the root. A write goes to a temp file in `<root>/.ldrt-tmp`, is
fsynced, then renamed over the key: a reader never sees a partial file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from ldrt_core.errors import ObjectNotFoundError, StoreError, StoreUnavailableError
from ldrt_core.store.base import CHUNK, RESERVED_PREFIX, ArtifactStore, ObjectInfo, Staged


class LocalStore(ArtifactStore):
    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self._tmp = self.root / f"{RESERVED_PREFIX}-tmp"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _staging_dir(self) -> Path:
        return self._tmp

    def _write(self, key: str, staged: Staged, content_type: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            if staged.owned and staged.path is not None:
                tmp = staged.path  # already a private file on this filesystem
            else:
                fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
                tmp = Path(name)
                with os.fdopen(fd, "wb") as out, staged.open() as src:
                    shutil.copyfileobj(src, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise StoreError(
                f"cannot write {key!r} under {self.root}: {exc.strerror or exc}"
            ) from exc

    def _exists(self, key: str) -> bool:  # without hashing the file, as `_info` must
        return self._path(key).is_file()

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
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(RESERVED_PREFIX)]
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
