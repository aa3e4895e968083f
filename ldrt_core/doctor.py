"""Health checks: is each configured service reachable, and is it in the state ldrt needs?

Input: the settings (and the Prefect API URL, which the caller reads from Prefect). Output: one
`Check` per service. Checks never write: a missing SQLite file or bucket is reported, not created.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

from ldrt_core import db
from ldrt_core.config import Settings, mask_url
from ldrt_core.errors import LdrtError
from ldrt_core.store import open_store

Status = Literal["ok", "warn", "fail"]

# Optional extras: (import name, distribution, the pip extra that brings it).
EXTRAS = (
    ("flash_attn", "flash-attn", "gpu"),
    ("vllm", "vllm", "gpu"),
    ("marker", "marker-pdf", "marker"),
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def check_database(settings: Settings) -> Check:
    shown = mask_url(settings.db_url)
    file = db.sqlite_file(settings.db_url)
    if file is not None and not file.exists():
        return Check("database", "ok", f"{shown}: not created yet; `ldrt db upgrade` creates it")
    engine = db.connect(settings, connect_timeout=5)
    try:
        version = db.server_version(engine)
        revision = db.current_revision(engine)
    except LdrtError as exc:
        return Check("database", "fail", str(exc))
    finally:
        engine.dispose()
    where = f"{engine.dialect.name} {version} at {shown}"
    gap = db.schema_gap(revision)
    if gap is None:
        return Check("database", "ok", f"{where}: schema up to date ({revision})")
    return Check("database", "warn", f"{where}: {gap}; run `ldrt db upgrade`")


def check_store(settings: Settings) -> Check:
    try:
        store = open_store(settings, create=False, connect_timeout=3, retries=0)
        return Check("store", "ok", store.check())
    except LdrtError as exc:
        return Check("store", "fail", str(exc))


def check_prefect(api_url: str | None, timeout: float = 5.0) -> Check:
    if not api_url:
        return Check(
            "prefect",
            "ok",
            "no PREFECT_API_URL: each run starts a temporary local API "
            "(set PREFECT_API_URL to a Prefect server to watch runs in its UI)",
        )
    health = f"{api_url.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:
            body = response.read(256)
    except urllib.error.HTTPError as exc:
        return Check(
            "prefect", "fail", f"Prefect API {api_url}: unhealthy (HTTP {exc.code} from /health)"
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("prefect", "fail", f"Prefect API {api_url}: unreachable ({reason})")
    try:
        healthy = json.loads(body or b"null") is True
    except ValueError:  # a proxy's or login page's HTML, not Prefect's answer
        healthy = False
    state = "reachable, healthy" if healthy else f"reachable, /health answered {body[:40]!r}"
    return Check("prefect", "ok" if healthy else "warn", f"Prefect API {api_url}: {state}")


def check_compute() -> Check:
    """What training and inference will run on; informational, never a failure."""
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        device = f"{torch.cuda.device_count()} CUDA device(s): {', '.join(names)}"
    else:
        device = "no CUDA device: training and local models run on the CPU"
    missing = [
        f"{dist} ([{extra}] extra)"
        for module, dist, extra in EXTRAS
        if importlib.util.find_spec(module) is None
    ]
    extras = (
        f"; not installed: {', '.join(missing)}" if missing else "; all optional extras installed"
    )
    return Check("compute", "ok", f"torch {importlib.metadata.version('torch')}, {device}{extras}")


def check_markdown(settings: Settings) -> Check:
    """Which engine writes the papers' markdown: PDFium, or Marker when it is set up."""
    from ldrt_core.extract import marker_status

    if not settings.marker_models:
        return Check(
            "markdown",
            "ok",
            "PDFium (for Marker's: the [marker] extra and LDRT_MARKER_MODELS, a folder of its "
            "weights)",
        )
    usable, why = marker_status(settings.marker_models)
    return Check("markdown", "ok" if usable else "warn", why)


def run_checks(settings: Settings, prefect_api_url: str | None) -> list[Check]:
    checks = [
        check_database(settings),
        check_store(settings),
        check_prefect(prefect_api_url),
        check_compute(),
        check_markdown(settings),
    ]
    return [Check(c.name, c.status, settings.scrub(c.detail)) for c in checks]
