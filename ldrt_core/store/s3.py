"""`S3Store`: the artifact store in an S3 bucket through the `minio` SDK (MinIO, AWS, any S3).

S3 PUTs are atomic: an object is visible only once whole. Each object carries its sha256 in
user metadata (`x-amz-meta-sha256`), so `stat` needs no download. The bucket stays private:
`url_for` hands out presigned URLs with an expiry.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from ldrt_core.config import Settings
from ldrt_core.errors import ObjectNotFoundError, StoreError, StoreUnavailableError
from ldrt_core.store.base import CHUNK, ArtifactStore, ObjectInfo, Staged

SHA256_META = "sha256"  # sent as x-amz-meta-sha256
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
_BAD_CREDENTIALS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Store(ArtifactStore):
    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        retries: int = 3,
        create_bucket: bool = True,
    ) -> None:
        location = settings.store_url.removeprefix("s3://")
        self.bucket, _, prefix = location.partition("/")
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        scheme = "https" if settings.s3_secure else "http"
        self.url = f"s3://{self.bucket}/{self.prefix} at {scheme}://{settings.s3_host}"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.5,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=None,  # S3 writes here are idempotent: same key, same bytes
            ),
            maxsize=16,
        )
        access = settings.s3_access_key.get_secret_value() if settings.s3_access_key else None
        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
        self._client = Minio(
            settings.s3_host,
            access_key=access,
            secret_key=secret,
            secure=bool(settings.s3_secure),
            region=settings.s3_region,
            http_client=http,
        )
        # Links for people are signed for the endpoint their browsers reach (the host is part of
        # the signature). Signing is local arithmetic once the region is known, so an endpoint
        # this process cannot reach itself is fine; MinIO's region is us-east-1.
        self._signer = self._client
        if public := settings.s3_public_host:
            host, secure = public
            region = settings.s3_region or "us-east-1"
            self._signer = Minio(
                host, access_key=access, secret_key=secret, secure=secure, region=region
            )
        if create_bucket:
            self.ensure_bucket()

    # ------------------------------------------------------------------ bucket

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; a bucket we already own is fine."""
        with self._errors("create bucket"):
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise

    def check(self) -> str:
        with self._errors("reach"):
            exists = self._client.bucket_exists(self.bucket)
        state = "exists" if exists else "does not exist yet (created on first use)"
        return f"{self.url}: reachable, bucket {self.bucket!r} {state}"

    # ------------------------------------------------------------------ primitives

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _write(self, key: str, staged: Staged, content_type: str, *, exclusive: bool) -> None:
        # `exclusive` is not enforced: the minio SDK sends no conditional PUT (If-None-Match).
        with self._errors("write", key), staged.open() as src:
            self._client.put_object(
                self.bucket,
                self._name(key),
                src,
                staged.size,
                content_type=content_type,
                metadata={SHA256_META: staged.sha256},
            )

    def _stat(self, key: str) -> Any:
        """The object's HEAD, or None when absent."""
        try:
            with self._errors("stat", key):
                return self._client.stat_object(self.bucket, self._name(key))
        except ObjectNotFoundError:
            return None

    def _size(self, key: str) -> int | None:  # a HEAD, where `_info` may hash the object
        obj = self._stat(key)
        return None if obj is None else int(obj.size or 0)

    def _info(self, key: str) -> ObjectInfo | None:
        obj = self._stat(key)
        if obj is None:
            return None
        meta = obj.metadata or {}
        sha = meta.get(f"x-amz-meta-{SHA256_META}") or meta.get(f"X-Amz-Meta-{SHA256_META.title()}")
        if not sha:  # written by something other than ldrt: hash it once, here
            digest = hashlib.sha256()
            with self.open(key) as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
            sha = digest.hexdigest()
        return ObjectInfo(key=key, size=int(obj.size or 0), sha256=str(sha))

    def _open(self, key: str) -> BinaryIO:
        what = f"read {key!r} in {self.url}"
        with self._errors("read", key):
            response = self._client.get_object(self.bucket, self._name(key))
        return io.BufferedReader(_ResponseStream(response, what), buffer_size=CHUNK)

    def _keys(self, prefix: str) -> Iterator[str]:
        with self._errors("list", prefix):
            for obj in self._client.list_objects(
                self.bucket, prefix=self._name(prefix), recursive=True
            ):
                name = str(obj.object_name)
                if not name.endswith("/"):
                    yield name[len(self.prefix) :]

    def _delete(self, key: str) -> None:
        with self._errors("delete", key):
            self._client.remove_object(self.bucket, self._name(key))

    def _url(self, key: str, expires: timedelta) -> str:
        with self._errors("presign", key):
            return str(
                self._signer.presigned_get_object(self.bucket, self._name(key), expires=expires)
            )

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        what = f"{action} {key!r} in {self.url}" if key is not None else f"{action} {self.url}"
        try:
            yield
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise ObjectNotFoundError(f"cannot {what}: {exc.code}") from None
            if exc.code in _BAD_CREDENTIALS:
                raise StoreError(
                    f"cannot {what}: {exc.code}; check LDRT_S3_ACCESS_KEY and LDRT_S3_SECRET_KEY"
                ) from None
            raise StoreError(f"cannot {what}: {exc.code}: {exc.message}") from None
        except (Urllib3HTTPError, OSError) as exc:
            raise StoreUnavailableError(
                f"cannot {what}: unreachable ({_reason(exc)}); "
                "is the S3 server up and LDRT_S3_ENDPOINT right?"
            ) from None


def _reason(exc: BaseException) -> str:
    """What a network error says, without urllib3's pool and connection preamble."""
    return str(getattr(exc, "reason", None) or exc).rpartition("): ")[2]


class _ResponseStream(io.RawIOBase):
    """A urllib3 response as a raw stream that returns its connection to the pool on close.

    A transfer cut or stalled mid-body raises StoreError naming the object, not urllib3's
    error: `ldrt fsck` reports that object unreadable and goes on."""

    def __init__(self, response: Any, what: str) -> None:
        self._response = response
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._response.read(len(buffer))
        except (Urllib3HTTPError, OSError) as exc:
            raise StoreError(
                f"cannot {self._what}: the transfer broke off ({_reason(exc)})"
            ) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()
