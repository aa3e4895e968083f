"""Prefect tasks: thin `@task` wrappers, one `ldrt_core` call each, with retries, timeouts,
tags and cache policies. Each pipeline stage adds its tasks here."""
