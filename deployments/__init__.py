"""Deployments: the weekly refresh schedule, the retrain trigger and the work pools.

Filled in with the orchestration work; `docker/compose.yaml` already runs the Prefect server
they register with."""
