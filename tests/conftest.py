"""Shared fixtures: a janitor that fails tests leaving the reactor dirty, and node factories."""

from __future__ import annotations

import gc
import inspect

import pytest
import pytest_twisted
from hypothesis import HealthCheck, settings
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher

from tests import pg

# Property tests check what is true, not how fast: on a shared two-core machine (and in CI) one slow
# example must not fail a run (hypothesis's default deadline is 200 ms per example).
settings.register_profile("anylog", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("anylog")


def _uses_reactor(request) -> bool:
    """Whether the test runs on the real reactor: it is async, or one of its fixtures is."""
    if inspect.iscoroutinefunction(request.function) or request.node.get_closest_marker("reactor"):
        return True
    for defs in request.node._fixtureinfo.name2fixturedefs.values():
        for fixturedef in defs:
            func = fixturedef.func
            if getattr(func, "_pytest_twisted_mark", None) or inspect.iscoroutinefunction(func) \
                    or inspect.isasyncgenfunction(func):
                return True
    return False


@pytest.fixture(autouse=True)
def reactor_janitor(request):
    """Fail a test that leaves timers, sockets or logged errors behind (pytest-twisted does not).

    Only a test that ran on the reactor pays for a reactor turn (so closing connections finish)
    and a full garbage collection (so an unhandled error in a Deferred is logged now, not in a
    later test); the many pure tests get the cheap checks.  Timers armed before the test (a
    module-scoped node's) are not its leaks.
    """
    errors = []

    def observe(event):
        if event.get("log_failure") is not None or event.get("isError"):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    readers, writers = set(reactor.getReaders()), set(reactor.getWriters())
    before = {id(c) for c in reactor.getDelayedCalls()}
    uses_reactor = _uses_reactor(request)
    yield
    if uses_reactor:
        pytest_twisted.blockon(task.deferLater(reactor, 0.01, lambda: None))
        gc.collect()
    else:
        gc.collect(1)
    globalLogPublisher.removeObserver(observe)
    calls = [c for c in reactor.getDelayedCalls() if c.active() and id(c) not in before]
    leaked = {s for s in (set(reactor.getReaders()) - readers) | (set(reactor.getWriters()) - writers)
              if not type(s).__module__.startswith("twisted.internet._signals")}  # the reactor's own wakers
    for c in calls:
        c.cancel()
    for s in leaked:
        getattr(s, "loseConnection", lambda: None)()
    if request.node.get_closest_marker("allow_logged_errors"):
        errors = []
    if calls or leaked or errors:
        detail = [str(e.get("log_failure") or e.get("log_format")) for e in errors]
        pytest.fail(f"dirty reactor: calls={calls} leaked={leaked} errors={detail}", pytrace=False)


def pytest_collection_finish(session):
    """Freeze every object made by imports and collection: the janitor's full collection after
    each reactor test then walks only what tests made, not the whole node's code (pytest's
    durations: the integration tests' teardowns went from 140 s to 47 s in all)."""
    gc.collect()
    gc.freeze()


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_logged_errors: the test expects errors in the log")
    config.addinivalue_line("markers", "reactor: a synchronous test that still runs the real reactor")


def pytest_sessionfinish(session, exitstatus):
    """Drop this process's pooled PostgreSQL databases (tests/pg.py): xdist workers end without
    running atexit handlers, so the pool would otherwise outlive the run."""
    pg.drop_pool()
