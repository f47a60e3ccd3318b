#!/bin/sh
# Creates or upgrades Temporal's two PostgreSQL schemas (persistence and SQL visibility) with
# temporal-sql-tool, as Temporal's own role. Idempotent: `setup-schema -v 0.0` only creates the
# version table when missing, `update-schema` applies the versions not applied yet.
# Run by docker-compose.yml's `temporal-schema` service and by `npm run cluster`.
#   SQL_HOST SQL_PORT SQL_USER SQL_PASSWORD  Temporal's role on PostgreSQL (SQL_PASSWORD is read by the tool)
#   SCHEMA_DIR      the server release's schema/postgresql/v12
#   SQL_TOOL        temporal-sql-tool binary (default: on PATH)
#   TEMPORAL_DB_NAME / TEMPORAL_VISIBILITY_DB_NAME  default temporal / temporal_visibility
set -eu
tool="${SQL_TOOL:-temporal-sql-tool}"
db="${TEMPORAL_DB_NAME:-temporal}"
vis="${TEMPORAL_VISIBILITY_DB_NAME:-temporal_visibility}"
sql() { "$tool" --plugin postgres12 --ep "${SQL_HOST:?}" -p "${SQL_PORT:-5432}" -u "${SQL_USER:?}" "$@"; }
sql --db "$db" setup-schema -v 0.0
sql --db "$db" update-schema -d "${SCHEMA_DIR:?}/temporal/versioned"
sql --db "$vis" setup-schema -v 0.0
sql --db "$vis" update-schema -d "${SCHEMA_DIR:?}/visibility/versioned"
