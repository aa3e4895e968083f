"""ldrt's Prefect flows: one per stage (`stages`), the end-to-end `pipeline`, `retraining`."""

from flows.heartbeats import install as _install_heartbeats

_install_heartbeats()  # flow runs end when their work does, not on the heartbeat's next second
