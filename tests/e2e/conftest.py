"""Fixtures for end-to-end tests: node processes that are always stopped afterwards."""

from __future__ import annotations

import pytest

from tests.e2e.harness import NodeProcess


@pytest.fixture
def nodes(tmp_path):
    """A factory of started node processes; every one is stopped when the test ends."""
    started: list[NodeProcess] = []

    def start(name: str, script: str = "", **kwargs) -> NodeProcess:
        node = NodeProcess(tmp_path, name, script, **kwargs)
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.stop()


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            # One xdist worker runs the end-to-end tests (they mostly wait on their node processes)
            # while the other takes the CPU-bound rest; see `--dist loadgroup` in the Makefile.
            item.add_marker(pytest.mark.xdist_group("e2e"))
