"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27

The lineage tables: papers, documents, figures, pairs, dataset versions and members,
training and evaluation runs, evaluation scores, and the refresh cursor.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("manifest_key", sa.Text(), nullable=False),
        sa.Column("stats", JSON, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["dataset_versions.id"],
            name=op.f("fk_dataset_versions_parent_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
    )
    op.create_table(
        "documents",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("store_key", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("extractor_version", sa.String(length=32), nullable=True),
        sa.Column("extract_status", sa.String(length=16), nullable=False),
        sa.Column("extract_error", sa.Text(), nullable=True),
        sa.Column("markdown_key", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "extract_status IN ('pending', 'ok', 'failed')",
            name=op.f("ck_documents_extract_status"),
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_documents")),
    )
    op.create_table(
        "refresh_cursors",
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("last_publication_date", sa.Date(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_refresh_cursors")),
    )
    op.create_table(
        "figures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("extractor_version", sa.String(length=32), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("bbox", JSON, nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("mentions", JSON, nullable=False),
        sa.Column("image_key", sa.Text(), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["document_sha256"],
            ["documents.sha256"],
            name=op.f("fk_figures_document_sha256_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_figures")),
        sa.UniqueConstraint(
            "document_sha256",
            "extractor_version",
            "ordinal",
            name=op.f("uq_figures_document_sha256"),
        ),
    )
    op.create_index(
        op.f("ix_figures_document_sha256"), "figures", ["document_sha256"], unique=False
    )
    op.create_index(op.f("ix_figures_image_sha256"), "figures", ["image_sha256"], unique=False)

    op.create_table(
        "papers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("doi", sa.String(length=256), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("abstract", sa.Text(), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("publication_date", sa.Date(), nullable=True),
        sa.Column("venue", sa.Text(), nullable=True),
        sa.Column("authors", JSON, nullable=False),
        sa.Column("pdf_url", sa.Text(), nullable=True),
        sa.Column("download_status", sa.String(length=16), nullable=False),
        sa.Column("download_error", sa.Text(), nullable=True),
        sa.Column("document_sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "download_status IN ('pending', 'ok', 'no_pdf', 'failed')",
            name=op.f("ck_papers_download_status"),
        ),
        sa.ForeignKeyConstraint(
            ["document_sha256"],
            ["documents.sha256"],
            name=op.f("fk_papers_document_sha256_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_papers")),
        sa.UniqueConstraint("doi", name=op.f("uq_papers_doi")),
        sa.UniqueConstraint("external_id", name=op.f("uq_papers_external_id")),
    )
    op.create_index(
        op.f("ix_papers_publication_date"), "papers", ["publication_date"], unique=False
    )

    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("parent_run_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("outputs", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')", name=op.f("ck_training_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset_versions.id"],
            name=op.f("fk_training_runs_dataset_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_run_id"],
            ["training_runs.id"],
            name=op.f("fk_training_runs_parent_run_id_training_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    op.create_index(
        op.f("ix_training_runs_dataset_id"), "training_runs", ["dataset_id"], unique=False
    )

    op.create_table(
        "evaluation_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("training_run_id", sa.String(length=36), nullable=True),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("model_label", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("report_key", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')", name=op.f("ck_evaluation_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset_versions.id"],
            name=op.f("fk_evaluation_runs_dataset_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["training_run_id"],
            ["training_runs.id"],
            name=op.f("fk_evaluation_runs_training_run_id_training_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_runs")),
    )
    op.create_index(
        op.f("ix_evaluation_runs_training_run_id"),
        "evaluation_runs",
        ["training_run_id"],
        unique=False,
    )

    op.create_table(
        "pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("figure_id", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("image_key", sa.Text(), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["figure_id"], ["figures.id"], name=op.f("fk_pairs_figure_id_figures")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairs")),
        sa.UniqueConstraint("content_sha256", name=op.f("uq_pairs_content_sha256")),
    )
    op.create_index(op.f("ix_pairs_figure_id"), "pairs", ["figure_id"], unique=False)

    op.create_table(
        "dataset_members",
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=8), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.CheckConstraint("split IN ('train', 'eval')", name=op.f("ck_dataset_members_split")),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset_versions.id"],
            name=op.f("fk_dataset_members_dataset_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_dataset_members_pair_id_pairs")
        ),
        sa.PrimaryKeyConstraint("dataset_id", "pair_id", name=op.f("pk_dataset_members")),
    )
    op.create_index(
        op.f("ix_dataset_members_pair_id"), "dataset_members", ["pair_id"], unique=False
    )

    op.create_table(
        "evaluation_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_run_id", sa.String(length=36), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_run_id"],
            ["evaluation_runs.id"],
            name=op.f("fk_evaluation_scores_evaluation_run_id_evaluation_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"], name=op.f("fk_evaluation_scores_pair_id_pairs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_scores")),
        sa.UniqueConstraint(
            "evaluation_run_id",
            "item_id",
            "metric",
            name=op.f("uq_evaluation_scores_evaluation_run_id"),
        ),
    )
    op.create_index(
        "ix_evaluation_scores_run_metric",
        "evaluation_scores",
        ["evaluation_run_id", "metric"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_evaluation_scores_run_metric", table_name="evaluation_scores")

    op.drop_table("evaluation_scores")
    op.drop_index(op.f("ix_dataset_members_pair_id"), table_name="dataset_members")

    op.drop_table("dataset_members")
    op.drop_index(op.f("ix_pairs_figure_id"), table_name="pairs")

    op.drop_table("pairs")
    op.drop_index(op.f("ix_evaluation_runs_training_run_id"), table_name="evaluation_runs")

    op.drop_table("evaluation_runs")
    op.drop_index(op.f("ix_training_runs_dataset_id"), table_name="training_runs")

    op.drop_table("training_runs")
    op.drop_index(op.f("ix_papers_publication_date"), table_name="papers")

    op.drop_table("papers")
    op.drop_index(op.f("ix_figures_image_sha256"), table_name="figures")
    op.drop_index(op.f("ix_figures_document_sha256"), table_name="figures")

    op.drop_table("figures")
    op.drop_table("refresh_cursors")
    op.drop_table("documents")
    op.drop_table("dataset_versions")
