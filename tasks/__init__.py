"""Prefect tasks: thin `@task` wrappers, one `ldrt_core` call each, with retries, timeouts,
tags and cache policies (`tasks.stages`; the cache choices are in its docstring), and the
per-process resources they open from the settings (`tasks.resources`).

Importing the package installs the tag-limit gate (`tasks.tag_limits`) in this process. It is
here, not in `flows`, because it is about task runs: every process that runs them has it,
whether or not it imports the flows. (A Dask worker imports them today only because Prefect
pickles each task run's flow into the context it ships with it.)"""

from tasks.tag_limits import install as _install_tag_limits

_install_tag_limits()  # task runs ask the server for slots only under tags that have a limit
