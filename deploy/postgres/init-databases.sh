#!/bin/sh
# Creates one role and one database per Partner Hub service, each owned by its role and closed to the others.
# Run by the postgres image on its first start (/docker-entrypoint-initdb.d); safe to run again by hand.
# Needs POSTGRES_USER and <SERVICE>_DB_PASSWORD for registry, accounts, incentives, funds and webhooks.
set -eu

create_service_database() {
    name="$1"
    password="$2"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        --set=name="$name" --set=password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'name', :'name') \gexec
SQL
    echo "partnerhub: database and role '$name' ready"
}

create_service_database registry "${REGISTRY_DB_PASSWORD:?set REGISTRY_DB_PASSWORD}"
create_service_database accounts "${ACCOUNTS_DB_PASSWORD:?set ACCOUNTS_DB_PASSWORD}"
create_service_database incentives "${INCENTIVES_DB_PASSWORD:?set INCENTIVES_DB_PASSWORD}"
create_service_database funds "${FUNDS_DB_PASSWORD:?set FUNDS_DB_PASSWORD}"
create_service_database webhooks "${WEBHOOKS_DB_PASSWORD:?set WEBHOOKS_DB_PASSWORD}"
