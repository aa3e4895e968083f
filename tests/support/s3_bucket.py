"""Remove a scratch bucket from an S3 server when a test or a benchmark is done with it: moto
keeps every object in memory, and MinIO on disk, for as long as it runs."""

from __future__ import annotations

from collections.abc import Mapping

from minio import Minio
from minio.deleteobjects import DeleteObject

from ldrt_core.config import load_settings


def remove_bucket(env: Mapping[str, str]) -> None:
    """Empty and remove the bucket that `env`'s LDRT_STORE_URL names, if it exists."""
    settings = load_settings(dict(env))
    secret = settings.s3_secret_key
    client = Minio(
        settings.s3_host,
        access_key=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
        secret_key=secret.get_secret_value() if secret else None,
        secure=bool(settings.s3_secure),
        region=settings.s3_region,
    )
    bucket = settings.store_url.removeprefix("s3://").partition("/")[0]
    if not client.bucket_exists(bucket):
        return
    names = (DeleteObject(o.object_name) for o in client.list_objects(bucket, recursive=True))
    errors = list(client.remove_objects(bucket, names))
    if errors:
        raise RuntimeError(f"cannot empty bucket {bucket}: {errors[0]}")
    client.remove_bucket(bucket)
