"""Paper sources: `open_source(settings, "s2")` or `open_source(settings, "folder:PATH")`."""

from __future__ import annotations

from ldrt_core.config import Settings
from ldrt_core.errors import ConfigError
from ldrt_core.sources.base import PaperSource
from ldrt_core.sources.folder import FolderSource

__all__ = ["FolderSource", "PaperSource", "open_source"]


def open_source(settings: Settings, spec: str = "s2") -> PaperSource:
    if spec == "s2":
        from ldrt_core.sources.semantic_scholar import SemanticScholarSource

        return SemanticScholarSource(settings)
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return FolderSource(spec.removeprefix("folder:"), max_bytes=settings.download_max_bytes)
    raise ConfigError(f"unknown paper source {spec!r}: expected 's2' or 'folder:PATH'")
