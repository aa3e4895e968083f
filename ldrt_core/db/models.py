"""The lineage database: facts about what the store holds, and where each came from.

Every table a Prefect run writes has `flow_run_id`. The chain paper -> document (PDF bytes by
sha256) -> figure -> pair -> dataset member -> training run -> evaluation score lets any score be
traced back to the PDF it came from. Migrations in `ldrt_core/db/migrations` build this schema;
a test checks the two agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
Sha256 = String(64)
FlowRunId = String(36)  # a Prefect flow-run UUID, when a Prefect run made the row


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: Json, list[Any]: Json}


def _now() -> datetime:
    return datetime.now(UTC)


class Timestamped:
    # Set here, to the microsecond: SQLite's CURRENT_TIMESTAMP (the server default, kept for rows
    # written by hand) has whole seconds, so two rows made in one second tied, and "the newest"
    # (dataset version, training run, evaluation report) could be the older of the two.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=_now
    )
    flow_run_id: Mapped[str | None] = mapped_column(FlowRunId)


class Paper(Timestamped, Base):
    """A paper found by a source. Deduplicated on the source's id and on DOI."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # "s2", "folder"
    external_id: Mapped[str] = mapped_column(
        String(128), unique=True
    )  # S2 paperId, or folder:<sha>
    doi: Mapped[str | None] = mapped_column(String(256), unique=True)  # lower-cased
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str | None] = mapped_column(Text)
    year: Mapped[int | None] = mapped_column(Integer)
    publication_date: Mapped[date | None] = mapped_column(Date, index=True)
    venue: Mapped[str | None] = mapped_column(Text)
    authors: Mapped[list[Any]] = mapped_column(default=list)
    pdf_url: Mapped[str | None] = mapped_column(Text)
    download_status: Mapped[str] = mapped_column(String(16), default="pending")
    download_error: Mapped[str | None] = mapped_column(Text)
    download_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    document_sha256: Mapped[str | None] = mapped_column(ForeignKey("documents.sha256"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = (
        CheckConstraint(
            "download_status IN ('pending', 'ok', 'no_pdf', 'failed')", name="download_status"
        ),
    )


class Document(Timestamped, Base):
    """One PDF, by content: two papers with the same bytes share a document."""

    __tablename__ = "documents"

    sha256: Mapped[str] = mapped_column(Sha256, primary_key=True)
    store_key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer)
    extractor_version: Mapped[str | None] = mapped_column(String(32))
    extract_status: Mapped[str] = mapped_column(String(16), default="pending")
    extract_error: Mapped[str | None] = mapped_column(Text)
    markdown_key: Mapped[str | None] = mapped_column(Text)
    extraction_key: Mapped[str | None] = mapped_column(Text)  # the whole result, tables too

    __table_args__ = (
        CheckConstraint("extract_status IN ('pending', 'ok', 'failed')", name="extract_status"),
    )


class Figure(Timestamped, Base):
    """A figure cut from a document by one extractor version."""

    __tablename__ = "figures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_sha256: Mapped[str] = mapped_column(ForeignKey("documents.sha256"), index=True)
    extractor_version: Mapped[str] = mapped_column(String(32))
    ordinal: Mapped[int] = mapped_column(Integer)  # order within the document
    label: Mapped[str] = mapped_column(String(64))  # "Figure 2", "Supplementary Figure S1"
    page: Mapped[int] = mapped_column(Integer)  # 1-based
    bbox: Mapped[list[Any]] = mapped_column()  # [x0, top, x1, bottom], PDF points, top-left origin
    caption: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[Any]] = mapped_column(default=list)
    image_key: Mapped[str | None] = mapped_column(Text)
    image_sha256: Mapped[str | None] = mapped_column(Sha256, index=True)

    __table_args__ = (UniqueConstraint("document_sha256", "extractor_version", "ordinal"),)


class Pair(Timestamped, Base):
    """A figure-caption pair: the unit curation keeps or drops and datasets are made of."""

    __tablename__ = "pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    figure_id: Mapped[int] = mapped_column(ForeignKey("figures.id"), index=True)
    content_sha256: Mapped[str] = mapped_column(Sha256, unique=True)  # image bytes + caption
    image_key: Mapped[str] = mapped_column(Text)
    caption: Mapped[str] = mapped_column(Text)


class DatasetVersion(Timestamped, Base):
    """A dataset, identified by the sha256 of its manifest: same inputs and config, same id."""

    __tablename__ = "dataset_versions"

    id: Mapped[str] = mapped_column(Sha256, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # "curated", "align", "instruct", ...
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_versions.id"))
    config_hash: Mapped[str] = mapped_column(Sha256)
    manifest_key: Mapped[str] = mapped_column(Text)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DatasetMember(Base):
    __tablename__ = "dataset_members"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), primary_key=True, index=True)
    split: Mapped[str] = mapped_column(String(8))
    content_sha256: Mapped[str] = mapped_column(Sha256)

    __table_args__ = (CheckConstraint("split IN ('train', 'eval')", name="split"),)


class TrainingRun(Timestamped, Base):
    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))  # align, instruct
    base_model: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"))
    status: Mapped[str] = mapped_column(String(16), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config_hash: Mapped[str] = mapped_column(Sha256)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> store key
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The top flow run (of a retried one, every attempt's): flow_run_id is its subflow's.
    root_flow_run_id: Mapped[str | None] = mapped_column(FlowRunId, index=True)

    __table_args__ = (
        CheckConstraint("status IN ('running', 'completed', 'failed')", name="status"),
    )


class EvaluationRun(Timestamped, Base):
    """One model's answers on a dataset's eval split (training_run_id null: the base model)."""

    __tablename__ = "evaluation_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    training_run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    model_label: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_key: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('running', 'completed', 'failed')", name="status"),
    )


class EvaluationScore(Base):
    """One metric on one evaluation item: a judge's 0-10, a ROUGE F, a length ratio..."""

    __tablename__ = "evaluation_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_run_id: Mapped[str] = mapped_column(ForeignKey("evaluation_runs.id"))
    pair_id: Mapped[int | None] = mapped_column(ForeignKey("pairs.id"))
    item_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(128))  # "judge:qwen2-72b", "rouge1", ...
    value: Mapped[float | None] = mapped_column(Float)  # null: unparsable verdict, not zero
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (UniqueConstraint("evaluation_run_id", "item_id", "metric"),)


class RefreshCursor(Base):
    """How far a source's incremental refresh has got, per (source, query)."""

    __tablename__ = "refresh_cursors"

    source: Mapped[str] = mapped_column(String(256), primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    last_publication_date: Mapped[date | None] = mapped_column(Date)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    flow_run_id: Mapped[str | None] = mapped_column(FlowRunId)


Index("ix_evaluation_scores_run_metric", EvaluationScore.evaluation_run_id, EvaluationScore.metric)
