"""training_runs.root_flow_run_id: the top flow run that started a training run

A retried flow run picks up the training its earlier attempt started (`train_stage`). Prefect
retries a parent run with new subflow runs, so the subflow's id (`flow_run_id`) differs from one
attempt to the next; the top flow run's id does not.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("root_flow_run_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_training_runs_root_flow_run_id", ["root_flow_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_index("ix_training_runs_root_flow_run_id")
        batch.drop_column("root_flow_run_id")
