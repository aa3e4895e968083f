"""Artifact store throughput: LocalStore and S3Store (a real S3 server on loopback).

    python bench/store.py                       # starts moto's S3 server on loopback itself
    python bench/store.py --s3 http://127.0.0.1:9000 --access-key K --secret-key S   # e.g. MinIO

Prints MB/s for put and get of large objects, and objects/s for small content-addressed puts
(first write, then the same bytes again, which must not write).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldrt_core.config import load_settings
from ldrt_core.store import ArtifactStore, open_store
from tests.support.s3_bucket import remove_bucket


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def rate(count: int, start: float) -> float:
    return count / (time.perf_counter() - start)


def bench(name: str, store: ArtifactStore) -> None:
    for size_mb, repeat in ((1, 20), (32, 3)):
        data = os.urandom(size_mb * 2**20)
        start = time.perf_counter()
        for _ in range(repeat):
            store.put(f"bench/{uuid.uuid4().hex}", data)
        put = size_mb * rate(repeat, start)
        store.put("bench/read", data, overwrite=True)
        start = time.perf_counter()
        for _ in range(repeat):
            store.get("bench/read")
        get = size_mb * rate(repeat, start)
        print(f"{name:6} {size_mb:>3} MB objects   put {put:8.1f} MB/s   get {get:8.1f} MB/s")
    small = [os.urandom(4096) for _ in range(200)]
    start = time.perf_counter()
    for blob in small:
        store.put_content(blob)
    first = rate(len(small), start)
    start = time.perf_counter()
    for blob in small:
        store.put_content(blob)
    again = rate(len(small), start)
    print(
        f"{name:6}   4 KB content puts  new {first:8.0f} obj/s   already stored {again:8.0f} obj/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--s3", help="S3 endpoint URL (default: start moto's server on loopback)")
    parser.add_argument("--access-key", default="bench")
    parser.add_argument("--secret-key", default="bench-secret")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        bench("local", open_store(load_settings({"LDRT_HOME": home})))
    server = contextmanager(lambda: iter([args.s3]))() if args.s3 else moto_server()
    with server as endpoint:
        env = {
            "LDRT_STORE_URL": f"s3://ldrt-bench-{uuid.uuid4().hex[:8]}",
            "LDRT_S3_ENDPOINT": endpoint,
            "LDRT_S3_ACCESS_KEY": args.access_key,
            "LDRT_S3_SECRET_KEY": args.secret_key,
            "LDRT_S3_REGION": "us-east-1",
        }
        try:
            bench("s3", open_store(load_settings(env)))
        finally:
            remove_bucket(env)


if __name__ == "__main__":
    main()
