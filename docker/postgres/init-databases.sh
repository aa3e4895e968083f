#!/bin/sh
# Runs once, on an empty data folder: creates the databases named in $LDRT_EXTRA_DATABASES
# (Prefect's, beside ldrt's own POSTGRES_DB), owned by $POSTGRES_USER.
set -eu
for db in $LDRT_EXTRA_DATABASES; do
    psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
done
