"""The PostgreSQL the tests use, in one place: 127.0.0.1:5432 as the non-superuser role that
`tools/ensure-postgres` makes (`anylog`, LOGIN CREATEDB, no superuser, no server files or programs),
so no test passes only because the node runs as a superuser (audit L4, issue 14)."""

from __future__ import annotations

import os

import psycopg2

PG_USER = os.environ.get("ANYLOG_TEST_PG_USER", "anylog")
PG = dict(ip="127.0.0.1", port=5432, user=PG_USER, password="")
PSQL = f'type = psql and ip = 127.0.0.1 and port = 5432 and user = {PG_USER} and password = ""'
LIBPQ = dict(host="127.0.0.1", port=5432, user=PG_USER)


def pg_connect(dbname: str = "postgres", **kwargs):
    return psycopg2.connect(dbname=dbname, **LIBPQ, **kwargs)


def pg_admin(sql: str, dbname: str = "postgres"):
    """One statement as the tests' role (it owns the databases the tests create)."""
    conn = pg_connect(dbname)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def drop_pg_database(name: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def kill_backends(database: str) -> int:
    rows = pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
                    f"AND pid <> pg_backend_pid()")
    return len(rows)
