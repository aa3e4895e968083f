"""The ArtifactStore contract, run against every backend: a local folder and a real S3 server."""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ldrt_core.config import load_settings
from ldrt_core.errors import (
    InvalidKeyError,
    ObjectConflictError,
    ObjectNotFoundError,
    StoreError,
    StoreUnavailableError,
)
from ldrt_core.store import ArtifactStore, LocalStore, open_store
from ldrt_core.store import base as store_base
from ldrt_core.store.s3 import S3Store


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return open_store(load_settings({"LDRT_HOME": str(tmp_path)}))
    env = request.getfixturevalue("s3_env")
    return open_store(load_settings(env))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FailingStream(io.RawIOBase):
    """A stream that breaks after `after` bytes, like a dropped download."""

    def __init__(self, after: int) -> None:
        self.left = after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise ConnectionResetError("peer went away")
        n = min(len(buffer), self.left, 64 * 1024)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


# ---------------------------------------------------------------------------- round trips


def test_put_bytes_then_get_stat_exists(store: ArtifactStore) -> None:
    data = b"%PDF-1.7 hello"
    info = store.put("papers/a.pdf", data, content_type="application/pdf")
    assert (info.size, info.sha256) == (len(data), sha(data))
    assert store.get("papers/a.pdf") == data
    assert store.stat("papers/a.pdf") == info
    assert store.exists("papers/a.pdf")
    assert not store.exists("papers/b.pdf")


def test_put_file_and_get_file(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    store.put("f/in.bin", src)
    out = store.get_file("f/in.bin", tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("spool_limit", [store_base.SPOOL_IN_MEMORY, 1024])
def test_put_stream_in_memory_and_spooled_to_disk(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, spool_limit: int
) -> None:
    monkeypatch.setattr(store_base, "SPOOL_IN_MEMORY", spool_limit)
    data = b"0123456789abcdef" * 200_000  # 3.2 MB, several chunks
    info = store.put("s/stream.bin", io.BytesIO(data))
    assert info.sha256 == sha(data)
    assert store.get("s/stream.bin") == data


def test_open_streams_in_pieces(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 20_000
    store.put("big.bin", data)
    pieces = []
    with store.open("big.bin") as stream:
        while piece := stream.read(100_000):
            pieces.append(piece)
    assert len(pieces) > 1
    assert b"".join(pieces) == data


def test_empty_object(store: ArtifactStore) -> None:
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.stat("empty").size == 0


def test_missing_object_is_a_typed_error(store: ArtifactStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="nope"):
        store.get("nope")
    with pytest.raises(ObjectNotFoundError):
        store.stat("nope")
    with pytest.raises(ObjectNotFoundError), store.open("dir/nope"):
        pass


def test_delete(store: ArtifactStore) -> None:
    store.put("d/x", b"1")
    store.delete("d/x")
    assert not store.exists("d/x")
    store.delete("d/x")  # deleting twice is fine


# ---------------------------------------------------------------------------- no silent overwrite


def test_same_bytes_twice_is_a_no_op_and_different_bytes_conflict(store: ArtifactStore) -> None:
    store.put("k", b"one")
    store.put("k", b"one")
    with pytest.raises(ObjectConflictError, match="overwrite=True"):
        store.put("k", b"two")
    assert store.get("k") == b"one"
    store.put("k", b"two", overwrite=True)
    assert store.get("k") == b"two"


def test_content_addressed_put_writes_once(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []
    real_write = store._write

    def counting_write(key, staged, content_type, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(key)
        real_write(key, staged, content_type, **kwargs)

    monkeypatch.setattr(store, "_write", counting_write)
    data = b"same pdf bytes"
    key = store.put_content(data)
    again = store.put_content(io.BytesIO(data))
    assert key == again == f"sha256/{sha(data)[:2]}/{sha(data)}"
    assert writes == [key]
    assert list(store.list("sha256/")) == [key]
    assert store.stat(key).sha256 == sha(data)


def test_a_damaged_content_addressed_object_is_repaired_by_writing_it_again(
    store: ArtifactStore,
) -> None:
    data = b"%PDF-1.7 the right bytes"
    key = store.put_content(data)
    store.put(key, b"", overwrite=True)  # what a crash or a bad disk can leave under the key
    assert store.put_content(io.BytesIO(data)) == key
    assert store.get(key) == data


def test_two_writers_of_different_bytes_to_a_free_key_do_not_both_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each looks, finds the key free and writes: the second must not replace the first."""
    store = LocalStore(tmp_path / "store")
    real_info = store._info
    both_looked = threading.Barrier(2)

    waited: set[str] = set()

    def info_then_wait(key: str) -> store_base.ObjectInfo | None:
        found = real_info(key)
        if (name := threading.current_thread().name) not in waited:  # its first look only
            waited.add(name)
            both_looked.wait(5)
        return found

    monkeypatch.setattr(store, "_info", info_then_wait)
    outcomes: dict[str, str] = {}

    def write(data: bytes) -> None:
        try:
            store.put("manifest.json", data)
            outcomes[data.decode()] = "ok"
        except ObjectConflictError:
            outcomes[data.decode()] = "conflict"

    writers = [
        threading.Thread(target=write, args=(d,), name=f"writer-{d!r}") for d in (b"A", b"B")
    ]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(10)
    assert sorted(outcomes.values()) == ["conflict", "ok"]
    winner = next(data for data, outcome in outcomes.items() if outcome == "ok")
    assert store.get("manifest.json") == winner.encode()


def test_local_writes_are_synced_to_disk_spooled_ones_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    store = LocalStore(tmp_path / "store")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    big = io.BytesIO(b"x" * (store_base.SPOOL_IN_MEMORY + 1))  # spooled to a file first
    for data in (io.BytesIO(b"small"), big):
        synced.clear()
        store.put_content(data)
        assert len(synced) >= 2  # the bytes, then the folder's new entry


def test_a_failed_local_write_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("a/b", b"1")
    with pytest.raises(StoreError, match="cannot write 'a'"):
        store.put("a", b"2")  # a folder is in the way
    assert list((store.root / ".ldrt-tmp").iterdir()) == []


def test_a_local_store_without_hard_links_still_writes_and_refuses_a_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vfat, exFAT and many network mounts refuse os.link (EPERM, EOPNOTSUPP)."""
    import errno
    import os

    others: dict[str, bytes] = {}  # what another writer puts at a key just before our link

    def no_links(source: str, target: str) -> None:
        if Path(target).name in others:
            Path(target).write_bytes(others.pop(Path(target).name))
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store = LocalStore(tmp_path / "store")
    store.put("manifest.json", b"A")
    store.put("manifest.json", b"A")
    with pytest.raises(ObjectConflictError):
        store.put("manifest.json", b"B")
    others["raced.json"] = b"theirs"  # after our look, before our rename: the look again sees it
    with pytest.raises(ObjectConflictError):
        store.put("raced.json", b"ours")
    assert store.get("raced.json") == b"theirs"
    key = store.put_content(io.BytesIO(b"x" * (store_base.SPOOL_IN_MEMORY + 1)))
    assert store.size(key) == store_base.SPOOL_IN_MEMORY + 1
    assert store.get("manifest.json") == b"A"
    assert list((store.root / ".ldrt-tmp").iterdir()) == []


@pytest.mark.parametrize("size", [5, store_base.SPOOL_IN_MEMORY + 1])  # copied, spooled
def test_a_write_into_a_folder_on_another_disk_is_staged_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A rename or a link out of <root>/.ldrt-tmp cannot cross to a folder linked in from
    another disk (EXDEV)."""
    import errno
    import os

    store = LocalStore(tmp_path / "store")
    real_link, real_replace = os.link, os.replace

    def same_disk_only(real: Any) -> Any:
        def move(source: Any, target: Any) -> None:
            if Path(source).parent == store.root / ".ldrt-tmp" and "figures" in str(target):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            real(source, target)

        return move

    monkeypatch.setattr(os, "link", same_disk_only(real_link))
    monkeypatch.setattr(os, "replace", same_disk_only(real_replace))
    data = b"y" * size
    key = store.put_content(io.BytesIO(data), namespace="figures")
    store.put("figures/named.png", data)
    store.put("figures/named.png", b"z", overwrite=True)
    assert store.get(key) == data and store.get("figures/named.png") == b"z"
    assert list(store.list("figures/")) == sorted([key, "figures/named.png"])
    leftovers = [p for p in store.root.rglob("*") if p.is_file() and ".ldrt" in p.name]
    assert leftovers == []


def test_a_folder_that_cannot_be_fsynced_is_no_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network and FUSE mounts refuse fsync on a folder (EINVAL); the file is in place."""
    import errno
    import os
    import stat

    real_fsync = os.fsync

    def files_only(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", files_only)
    store = LocalStore(tmp_path / "store")
    store.put("a/b.bin", b"1")
    assert store.get("a/b.bin") == b"1"


def test_a_folder_linked_into_a_local_store_is_listed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("figures/ab/one.png", b"1")
    store.put("papers/x", b"2")
    moved = tmp_path / "other-disk" / "figures"
    moved.parent.mkdir()
    (store.root / "figures").rename(moved)
    (store.root / "figures").symlink_to(moved)
    (moved / "loop").symlink_to(store.root)  # a link back up is not walked twice
    assert list(store.list()) == ["figures/ab/one.png", "papers/x"]
    assert list(store.list("figures/")) == ["figures/ab/one.png"]


def test_content_addressed_namespace(store: ArtifactStore) -> None:
    key = store.put_content(b"png", namespace="figures")
    assert key.startswith("figures/")
    with pytest.raises(InvalidKeyError):
        store.put_content(b"png", namespace="../up")


# ---------------------------------------------------------------------------- atomicity


def test_a_write_that_fails_midway_leaves_nothing_behind(store: ArtifactStore) -> None:
    with pytest.raises(ConnectionResetError):
        store.put("partial", io.BufferedReader(FailingStream(after=3 * 1024 * 1024)))
    assert not store.exists("partial")
    store.put("kept", b"old")
    with pytest.raises(ConnectionResetError):
        store.put("kept", io.BufferedReader(FailingStream(after=100_000)), overwrite=True)
    assert store.get("kept") == b"old"
    assert list(store.list()) == ["kept"]
    if isinstance(store, LocalStore):  # and no temp file is left in the folder
        leftovers = [p for p in store.root.rglob("*") if p.is_file() and p.name != "kept"]
        assert leftovers == []


def test_readers_never_see_a_partial_object(store: ArtifactStore) -> None:
    versions = [bytes([b]) * (2 * 1024 * 1024) for b in b"ab"]
    store.put("hot", versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                data = store.get("hot")
                seen.add(hashlib.sha256(data).digest())
                assert data in versions, f"torn read: {len(data)} bytes"
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(12):
        store.put("hot", versions[i % 2], overwrite=True)
    stop.set()
    thread.join(30)
    assert not errors, errors[0]
    assert seen  # the reader did read


# ---------------------------------------------------------------------------- listing and keys


def test_list_by_prefix_in_lexical_order(store: ArtifactStore) -> None:
    for key in ["runs/b/1", "runs/a/2", "runs/a/1", "runs-old/x", "other/y", "runs/ab"]:
        store.put(key, key.encode())
    assert list(store.list("runs/")) == ["runs/a/1", "runs/a/2", "runs/ab", "runs/b/1"]
    assert list(store.list("runs/a")) == ["runs/a/1", "runs/a/2", "runs/ab"]
    assert list(store.list("runs")) == [
        "runs-old/x",
        "runs/a/1",
        "runs/a/2",
        "runs/ab",
        "runs/b/1",
    ]
    assert len(list(store.list())) == 6
    assert list(store.list("absent/")) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../b",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "nul\x00byte",
        "new\nline",
        "del\x7f",
        ".ldrt-tmp/x",
        "k" * 1100,
    ],
)
def test_bad_keys_are_refused_everywhere(store: ArtifactStore, key: str) -> None:
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url_for(key),
    ):
        with pytest.raises(InvalidKeyError):
            call()
    assert list(store.list()) == []


def test_url_for_reads_back(store: ArtifactStore) -> None:
    store.put("reports/r.md", b"# report")
    url = store.url_for("reports/r.md", expires=timedelta(minutes=5))
    if url.startswith("file://"):
        assert Path(url.removeprefix("file://")).read_bytes() == b"# report"
    else:
        assert "X-Amz-Expires=300" in url
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"# report"


@pytest.mark.integration
def test_links_are_signed_for_the_public_endpoint(s3_env: dict[str, str]) -> None:
    """Under compose the workers reach MinIO as minio:9000 and browsers as localhost:9000: a
    link signed for the first does not open in a browser, and the host is part of the
    signature. Here the server answers on 127.0.0.1 and on localhost alike."""
    public = s3_env["LDRT_S3_ENDPOINT"].replace("127.0.0.1", "localhost")
    assert public != s3_env["LDRT_S3_ENDPOINT"]
    store = open_store(load_settings({**s3_env, "LDRT_S3_PUBLIC_ENDPOINT": public}))
    store.put("reports/r.md", b"# report")
    url = store.url_for("reports/r.md", expires=timedelta(minutes=5))
    assert url.startswith(f"{public}/") and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"# report"
    unreachable = {**s3_env, "LDRT_S3_PUBLIC_ENDPOINT": "https://ldrt.invalid:9443"}
    signed = open_store(load_settings(unreachable)).url_for("reports/r.md")  # no request made
    assert signed.startswith("https://ldrt.invalid:9443/")


@pytest.mark.integration
def test_the_bucket_ldrt_creates_is_private(s3_env: dict[str, str]) -> None:
    """Read back with another client (boto3): no bucket policy, no grant to all users."""
    import boto3
    from botocore.exceptions import ClientError

    store = open_store(load_settings(s3_env))
    store.put("reports/r.md", b"# report")
    bucket = s3_env["LDRT_STORE_URL"].removeprefix("s3://")
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_env["LDRT_S3_ENDPOINT"],
        aws_access_key_id=s3_env["LDRT_S3_ACCESS_KEY"],
        aws_secret_access_key=s3_env["LDRT_S3_SECRET_KEY"],
        region_name=s3_env["LDRT_S3_REGION"],
    )
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
    grantees = [g["Grantee"] for g in s3.get_bucket_acl(Bucket=bucket)["Grants"]]
    assert grantees and all(g["Type"] == "CanonicalUser" for g in grantees), grantees


def test_check_describes_the_backend(store: ArtifactStore) -> None:
    assert store.check()


# ---------------------------------------------------------------------------- S3 specifics


@pytest.mark.integration
def test_s3_prefix_scopes_every_key(s3_env: dict[str, str]) -> None:
    outer = open_store(load_settings(s3_env))
    inner = open_store(
        load_settings({**s3_env, "LDRT_STORE_URL": s3_env["LDRT_STORE_URL"] + "/team/a"})
    )
    inner.put("x.json", b"{}")
    outer.put("y.json", b"[]")
    assert list(inner.list()) == ["x.json"]
    assert list(outer.list()) == ["team/a/x.json", "y.json"]
    assert outer.get("team/a/x.json") == b"{}"


@pytest.mark.integration
def test_s3_bucket_that_exists_is_fine(s3_env: dict[str, str]) -> None:
    settings = load_settings(s3_env)
    open_store(settings).put("a", b"1")
    again = open_store(settings)  # creates the bucket again: no error, nothing lost
    assert again.get("a") == b"1"


@pytest.mark.integration
def test_s3_stat_hashes_objects_written_without_ldrt_metadata(s3_env: dict[str, str]) -> None:
    store = open_store(load_settings(s3_env))
    client = store._client  # type: ignore[attr-defined]
    client.put_object(store.bucket, "foreign.bin", io.BytesIO(b"abc"), 3)  # type: ignore[attr-defined]
    assert store.stat("foreign.bin").sha256 == sha(b"abc")


def test_size_reads_no_bytes(store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fsck --no-hash` asks only sizes: not one object is read, not even one written by
    something other than ldrt (no sha256 in its S3 metadata)."""
    store.put("mine.bin", b"abcd")
    if isinstance(store, S3Store):
        store._client.put_object(store.bucket, "foreign.bin", io.BytesIO(b"abc"), 3)
    else:
        store.put("foreign.bin", b"abc")

    def no_reads(key: str) -> None:
        raise AssertionError(f"read {key}")

    monkeypatch.setattr(store, "_open", no_reads)
    if isinstance(store, LocalStore):  # which hashes a file without `_open`
        monkeypatch.setattr(Path, "open", no_reads)
    assert (store.size("mine.bin"), store.size("foreign.bin")) == (4, 3)
    with pytest.raises(ObjectNotFoundError):
        store.size("absent")


@pytest.mark.unit
def test_dead_s3_endpoint_is_unavailable_fast() -> None:
    settings = load_settings(
        {"LDRT_STORE_URL": "s3://some-bucket", "LDRT_S3_ENDPOINT": "http://127.0.0.1:9"}
    )
    store = open_store(settings, create=False, connect_timeout=2, retries=0)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        store.check()
    with pytest.raises(StoreUnavailableError):
        open_store(settings, connect_timeout=2, retries=0)  # creating the bucket fails the same way


@pytest.mark.integration
def test_an_s3_read_cut_off_midway_is_a_store_error(s3_env: dict[str, str]) -> None:
    from urllib.parse import urlsplit

    from tests.support.faulty_proxy import FaultyProxy

    s3 = urlsplit(s3_env["LDRT_S3_ENDPOINT"])
    assert s3.hostname is not None and s3.port is not None
    with FaultyProxy(s3.hostname, s3.port) as proxy:
        env = {**s3_env, "LDRT_S3_ENDPOINT": f"http://127.0.0.1:{proxy.port}"}
        store = S3Store(load_settings(env), read_timeout=5, retries=0)
        store.put("big", b"x" * (8 * 1024 * 1024))
        with store.open("big") as stream:
            assert stream.read(1024) == b"x" * 1024
            proxy.cut()
            with pytest.raises(StoreError, match=r"cannot read 'big'.*broke off"):
                stream.read()
