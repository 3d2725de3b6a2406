"""Shared fixtures: a janitor that fails tests leaving the reactor dirty, and node factories."""

from __future__ import annotations

import gc

import pytest
import pytest_twisted
from hypothesis import HealthCheck, settings
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher

# Property tests check what is true, not how fast: on a shared two-core machine (and in CI) one slow
# example must not fail a run (hypothesis's default deadline is 200 ms per example).
settings.register_profile("anylog", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("anylog")


@pytest.fixture(autouse=True)
def reactor_janitor(request):
    """Fail a test that leaves timers, sockets or logged errors behind (pytest-twisted does not)."""
    errors = []

    def observe(event):
        if event.get("log_failure") is not None or event.get("isError"):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    readers, writers = set(reactor.getReaders()), set(reactor.getWriters())
    yield
    pytest_twisted.blockon(task.deferLater(reactor, 0.01, lambda: None))
    gc.collect()
    globalLogPublisher.removeObserver(observe)
    calls = [c for c in reactor.getDelayedCalls() if c.active()]
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


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_logged_errors: the test expects errors in the log")
