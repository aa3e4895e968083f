"""ldrt's Prefect flows: one per stage (`stages`), the end-to-end `pipeline`, `retraining`."""

from flows.heartbeats import install as _install_heartbeats
from flows.tag_limits import install as _install_tag_limits

_install_heartbeats()  # flow runs end when their work does, not on the heartbeat's next second
_install_tag_limits()  # task runs ask the server for slots only under tags that have a limit
