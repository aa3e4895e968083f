"""The artifact store: bytes by key, with content-addressed writes.

`ArtifactStore` holds the logic every backend shares (key rules, hashing, the no-silent-overwrite
rule, content addressing); a backend supplies six primitives. Keys are '/'-separated relative
paths; content-addressed keys look like `sha256/ab/abcdef...`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from ldrt_core.errors import InvalidKeyError, ObjectConflictError, ObjectNotFoundError

CHUNK = 1024 * 1024
MAX_KEY_BYTES = 1024  # S3's limit on an object name
# Streams larger than this are staged on disk while they are hashed, not in memory.
SPOOL_IN_MEMORY = 8 * CHUNK
# Segments that backends use for their own bookkeeping; no user key may start with one.
RESERVED_PREFIX = ".ldrt"

Source = bytes | bytearray | memoryview | os.PathLike[str] | BinaryIO


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str


@dataclass(slots=True)
class Staged:
    """Bytes ready to write: their size and hash are known before the backend sees them."""

    size: int
    sha256: str
    data: bytes | None = None  # small payloads stay in memory
    path: Path | None = None  # larger ones sit in a file (the caller's, or a temp one we own)
    owned: bool = False  # True when `path` is our temp file and must be removed

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")

    def discard(self) -> None:
        if self.owned and self.path is not None:
            self.path.unlink(missing_ok=True)


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise InvalidKeyError saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("store key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"store key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise InvalidKeyError(
            f"store key {key!r} is absolute; keys are relative, like 'runs/x.json'"
        )
    if "\\" in key:
        raise InvalidKeyError(f"store key {key!r} contains a backslash; use '/' between parts")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKeyError(f"store key {key!r} contains a control character")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKeyError(
                f"store key {key!r} has an empty, '.' or '..' part; keys cannot leave their prefix"
            )
        if part.startswith(RESERVED_PREFIX):
            raise InvalidKeyError(f"store key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: '' or a key, optionally ending in '/'."""
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


def content_key(sha256: str, namespace: str = "sha256") -> str:
    """The content-addressed key of bytes with this hash."""
    return f"{validate_key(namespace)}/{sha256[:2]}/{sha256}"


def conflict(url: str, key: str, held: str, new: str) -> ObjectConflictError:
    return ObjectConflictError(
        f"{key!r} in {url} already holds different bytes "
        f"(sha256 {held[:12]}..., new {new[:12]}...); "
        "pass overwrite=True to replace them, or write under a new key"
    )


class ArtifactStore(ABC):
    """Bytes by key. Writes are atomic: a reader sees the whole old object or the whole new one."""

    url: str  # where this store lives, without credentials (for logs and doctor)

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    def _write(self, key: str, staged: Staged, content_type: str, *, exclusive: bool) -> None:
        """Atomically make `key` hold the staged bytes. `exclusive`: the key was free when
        looked at; a backend that can make that check and the write one step raises
        ObjectConflictError when another writer put different bytes there in between."""

    @abstractmethod
    def _info(self, key: str) -> ObjectInfo | None:
        """Size and hash of `key`, or None when absent."""

    @abstractmethod
    def _open(self, key: str) -> BinaryIO:
        """A readable stream of the object; raise ObjectNotFoundError when absent."""

    @abstractmethod
    def _keys(self, prefix: str) -> Iterator[str]:
        """Every key that starts with `prefix`, in lexical order."""

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Remove `key`; absent keys are fine."""

    @abstractmethod
    def _url(self, key: str, expires: timedelta) -> str:
        """A URL to read `key` from."""

    @abstractmethod
    def check(self) -> str:
        """Probe the backend without writing; return a one-line description or raise StoreError."""

    def _staging_dir(self) -> Path | None:
        """Where to spool streams; a backend that renames into place wants its own filesystem."""
        return None

    # ------------------------------------------------------------------ public API

    def put(
        self,
        key: str,
        data: Source,
        *,
        content_type: str = "application/octet-stream",
        overwrite: bool = False,
    ) -> ObjectInfo:
        """Store bytes, a file (a path) or a stream under `key`.

        Writing the bytes a key already holds is a no-op. Different bytes raise
        ObjectConflictError unless `overwrite=True`: nothing stored is replaced by accident.
        """
        validate_key(key)
        staged = self._stage(data)
        try:
            return self._put_staged(key, staged, content_type, overwrite)
        finally:
            staged.discard()

    def put_content(
        self,
        data: Source,
        *,
        namespace: str = "sha256",
        content_type: str = "application/octet-stream",
    ) -> str:
        """Store bytes under their own hash and return the key; the same bytes are written once."""
        return self.put_content_info(data, namespace=namespace, content_type=content_type).key

    def put_content_info(
        self,
        data: Source,
        *,
        namespace: str = "sha256",
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """`put_content`, returning the key with the size and hash.

        The key names the hash of its bytes, so an object there that hashes otherwise is
        damaged (a crash, a bad disk); writing the right bytes replaces it."""
        staged = self._stage(data)
        try:
            key = content_key(staged.sha256, namespace)
            return self._put_staged(key, staged, content_type, overwrite=True)
        finally:
            staged.discard()

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def get_file(self, key: str, dest: os.PathLike[str] | str) -> Path:
        """Copy the object into a local file (written beside it first, then renamed)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out, self.open(key) as stream:
                shutil.copyfileobj(stream, out, CHUNK)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Stream an object: `with store.open(key) as f: f.read(n)`."""
        stream = self._open(validate_key(key))
        try:
            yield stream
        finally:
            stream.close()

    def exists(self, key: str) -> bool:
        return self._exists(validate_key(key))

    def _exists(self, key: str) -> bool:
        """Whether an object is at `key`; a store that can tell without reading it says so."""
        return self._info(key) is not None

    def stat(self, key: str) -> ObjectInfo:
        info = self._info(validate_key(key))
        if info is None:
            raise ObjectNotFoundError(f"no object at {key!r} in {self.url}")
        return info

    def size(self, key: str) -> int:
        """The object's size in bytes, without reading or hashing it."""
        size = self._size(validate_key(key))
        if size is None:
            raise ObjectNotFoundError(f"no object at {key!r} in {self.url}")
        return size

    def _size(self, key: str) -> int | None:
        """Size of `key`, or None when absent; a store that can tell without hashing says so."""
        info = self._info(key)
        return None if info is None else info.size

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix`, in lexical order.

        'runs/' lists a folder; 'runs/a' matches every key that starts with it.
        """
        return self._keys(validate_prefix(prefix))

    def delete(self, key: str) -> None:
        self._delete(validate_key(key))

    def url_for(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL to fetch the object from: presigned with an expiry on S3, file:// locally."""
        return self._url(validate_key(key), expires)

    # ------------------------------------------------------------------ shared machinery

    def _put_staged(
        self, key: str, staged: Staged, content_type: str, overwrite: bool
    ) -> ObjectInfo:
        info = ObjectInfo(key=key, size=staged.size, sha256=staged.sha256)
        current = self._info(key)
        if current is not None and current.sha256 == staged.sha256:
            return info
        if current is not None and not overwrite:
            raise conflict(self.url, key, current.sha256, staged.sha256)
        self._write(key, staged, content_type, exclusive=not overwrite)
        return info

    def _stage(self, data: Source) -> Staged:
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            return Staged(size=len(raw), sha256=hashlib.sha256(raw).hexdigest(), data=raw)
        if isinstance(data, os.PathLike):
            path = Path(data)
            digest, size = hashlib.sha256(), 0
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            return Staged(size=size, sha256=digest.hexdigest(), path=path)
        return self._spool(data)

    def _spool(self, stream: BinaryIO) -> Staged:
        """Read a stream once, hashing as it goes; keep it in memory while it is small."""
        digest, buf = hashlib.sha256(), bytearray()
        while len(buf) <= SPOOL_IN_MEMORY and (chunk := stream.read(CHUNK)):
            digest.update(chunk)
            buf += chunk
        if len(buf) <= SPOOL_IN_MEMORY:
            return Staged(size=len(buf), sha256=digest.hexdigest(), data=bytes(buf))
        staging = self._staging_dir()
        if staging is not None:
            staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging, prefix="spool-")
        size = len(buf)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(buf)
                del buf
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Staged(size=size, sha256=digest.hexdigest(), path=Path(tmp), owned=True)
