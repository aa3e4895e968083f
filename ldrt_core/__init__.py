"""ldrt's domain layer: a module per pipeline stage, plus config, storage and the lineage database.

Nothing here imports Prefect: orchestration lives in `tasks/` and `flows/`.
"""

__version__ = "0.1.0"
