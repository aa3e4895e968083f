"""Prefect tasks: thin `@task` wrappers, one `ldrt_core` call each, with retries, timeouts,
tags and cache policies (`tasks.stages`; the cache choices are in its docstring), and the
per-process resources they open from the settings (`tasks.resources`)."""
