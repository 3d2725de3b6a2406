"""The PostgreSQL the tests use, in one place: 127.0.0.1:5432 as the non-superuser role that
`tools/ensure-postgres` makes (`anylog`, LOGIN CREATEDB, no superuser, no server files or programs),
so no test passes only because the node runs as a superuser (audit L4, issue 14)."""

from __future__ import annotations

import atexit
import os
import uuid

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


# This process's databases whose public schema is empty, ready for the next test.  DROP DATABASE
# forces a checkpoint (about 0.4 s each on a loaded machine, seconds under the whole suite's I/O,
# and some fixtures make four); emptying the schema costs a few milliseconds.
_POOL: list[str] = []
_ISSUED: set[str] = set()  # every name handed out, pooled or not: all are dropped when the process ends


def new_database(prefix: str) -> str:
    """A database name for one test: an emptied one of this process's, or a new unique name (the
    node creates it).  Each xdist worker is its own process, so workers never share one."""
    name = _POOL.pop() if _POOL else f"{prefix}_{uuid.uuid4().hex[:10]}"
    _ISSUED.add(name)
    return name


def drop_pg_database(name: str) -> None:
    """Give a test's database back: its backends ended and its public schema emptied, for the next
    test of this process; dropped for real when the process ends (or if it cannot be emptied)."""
    if not pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        return  # never created
    kill_backends(name)  # before connecting: it ends every session of the database but the asker's
    conn = pg_connect(name)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '5s'")
            cur.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                        "AND nspname NOT IN ('information_schema', 'public')")
            for (schema,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
            cur.execute("DROP SCHEMA IF EXISTS public CASCADE")
            cur.execute("CREATE SCHEMA public")
    except psycopg2.Error:
        conn.close()
        _drop(name)
        return
    conn.close()
    if name not in _POOL:
        _POOL.append(name)


def _drop(name: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@atexit.register
def drop_pool() -> None:
    """Drop every database this process handed out or pooled, for real (the end of a test process)."""
    names = _ISSUED | set(_POOL)
    _ISSUED.clear()
    _POOL.clear()
    for name in names:
        try:
            _drop(name)
        except psycopg2.Error:
            pass


def kill_backends(database: str) -> int:
    rows = pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
                    f"AND pid <> pg_backend_pid()")
    return len(rows)
