"""`FolderSource`: a local folder of PDFs, with an optional `metadata.jsonl` beside them.

Each line of metadata.jsonl describes one PDF: `{"pdf": "name.pdf", "paper_id": ..., "title": ...,
"doi": ..., "year": ..., "publication_date": "YYYY-MM-DD", "authors": [...], "abstract": ...,
"venue": ...}`. A PDF without a line is still found, titled after its file name.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ldrt_core.download import pdf_stream_from_file
from ldrt_core.errors import DownloadError, RefusedURLError, SourceError
from ldrt_core.papers import PaperRecord
from ldrt_core.sources.base import PaperSource


class FolderSource(PaperSource):
    def __init__(self, folder: Path | str, max_bytes: int = 50_000_000) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise SourceError(f"paper folder {self.folder} does not exist or is not a folder")
        self.name = f"folder:{self.folder}"
        self.max_bytes = max_bytes

    def _metadata(self) -> dict[str, dict[str, Any]]:
        path = self.folder / "metadata.jsonl"
        if not path.exists():
            return {}
        found: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                found[str(entry["pdf"])] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SourceError(
                    f"{path}, line {number}: expected a JSON object with a 'pdf' file name"
                ) from None
        return found

    def search(self, query: str, since: dt.date | None) -> Iterator[PaperRecord]:
        """Every PDF in the folder (the query does not apply to a folder; `since` does)."""
        metadata = self._metadata()
        records = []
        for pdf in sorted(p for p in self.folder.glob("*.pdf") if p.is_file()):
            meta = metadata.get(pdf.name, {})
            try:
                record = PaperRecord(
                    source="folder",
                    external_id=f"folder:{meta.get('paper_id') or pdf.stem}",
                    title=meta.get("title") or pdf.stem.replace("_", " "),
                    doi=meta.get("doi"),
                    abstract=meta.get("abstract"),
                    year=meta.get("year"),
                    publication_date=meta.get("publication_date"),
                    venue=meta.get("venue"),
                    authors=[str(a) for a in meta.get("authors") or []],
                    pdf_url=pdf.name,
                )
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"]
                raise SourceError(f"metadata for {pdf.name} is invalid: {reason}") from None
            if since is None or record.publication_date is None or record.publication_date >= since:
                records.append(record)
        records.sort(key=lambda r: (r.publication_date or dt.date.min, r.external_id))
        yield from records

    def holds(self, pdf_url: str | None) -> bool:
        """Folder papers share one namespace: a paper another folder found (and its refresh
        left to download) is not this folder's unless the file is here too."""
        return bool(pdf_url) and (self.folder / str(pdf_url)).is_file()

    @contextmanager
    def open_pdf(self, paper: PaperRecord) -> Iterator[BinaryIO]:
        path = (self.folder / str(paper.pdf_url)).resolve()
        if path.parent != self.folder:
            raise RefusedURLError(f"{paper.pdf_url!r} is not a file in {self.folder}")
        try:
            raw = path.open("rb")
        except OSError as exc:  # gone since the search, a folder, unreadable
            raise DownloadError(f"cannot read {path}: {exc.strerror or exc}") from None
        with raw:
            yield pdf_stream_from_file(raw, str(path), self.max_bytes)

    def close(self) -> None:
        pass
