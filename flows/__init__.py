"""ldrt's Prefect flows: one per stage (`stages`), the end-to-end `pipeline`, `retraining`.
Importing them imports `tasks`, which gates the task runs' tag concurrency requests."""

from flows.heartbeats import install as _install_heartbeats

_install_heartbeats()  # flow runs end when their work does, not on the heartbeat's next second
