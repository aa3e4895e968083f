"""Deployments: the weekly refresh schedule, the retrain trigger and the work pools.

`deployments.deploy.deploy()` (or `python -m deployments.deploy`) registers them with the Prefect
server that PREFECT_API_URL names; the flows they run are in `flows.retraining`."""
