"""Artifact store: `open_store(settings)` gives the backend the configuration names."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ldrt_core.config import Settings
from ldrt_core.store.base import ArtifactStore, ObjectInfo, content_key, validate_key
from ldrt_core.store.local import LocalStore

__all__ = ["ArtifactStore", "LocalStore", "ObjectInfo", "content_key", "open_store", "validate_key"]


def open_store(
    settings: Settings, *, create: bool = True, connect_timeout: float = 10.0, retries: int = 3
) -> ArtifactStore:
    """The store for `settings.store_url`.

    `create=False` opens without creating the bucket (for probes); the timeouts apply to S3.
    """
    if settings.store_is_s3:
        from ldrt_core.store.s3 import S3Store

        return S3Store(
            settings, create_bucket=create, connect_timeout=connect_timeout, retries=retries
        )
    parts = urlsplit(settings.store_url)
    # file:///abs/path, or file://relative/path as a convenience.
    return LocalStore(unquote(parts.netloc + parts.path))
