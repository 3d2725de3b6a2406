"""The layers of the package point one way, and the packaging lists every package.

`lint-imports` (run by `make test`) checks the import graph statically; this module checks what
actually happens at import time: a fresh interpreter that imports every module of one layer has
loaded nothing of the layers above it.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import anylog_tw

ROOT = Path(anylog_tw.__file__).resolve().parent.parent

# Bottom to top, as in the import-linter contract of pyproject.toml.
LAYERS = [
    ["anylog_tw.base"],
    ["anylog_tw.storage"],
    ["anylog_tw.metadata"],
    ["anylog_tw.net"],
    ["anylog_tw.ingest"],
    ["anylog_tw.services", "anylog_tw.query", "anylog_tw.msg"],
    ["anylog_tw.front"],
    ["anylog_tw.commands"],
    ["anylog_tw.node"],
    ["anylog_tw.tap"],
    ["anylog_tw.cli"],
]


def _contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[name.strip(" ()") for name in layer.split("|")] for layer in reversed(contract["layers"])]


def _modules(package: str) -> list[str]:
    path = ROOT / package.replace(".", "/")
    if not path.is_dir():
        return [package] if path.with_suffix(".py").exists() else []
    return [package] + [m.name for m in pkgutil.walk_packages([str(path)], package + ".")]


def test_the_layers_here_are_the_contracts_layers():
    assert _contract_layers() == LAYERS


@pytest.mark.parametrize("index", range(len(LAYERS)), ids=[" ".join(layer) for layer in LAYERS])
def test_a_layer_imports_nothing_above_it(index):
    """Import every module of one layer in a fresh interpreter; no module of a higher layer is loaded."""
    modules = [m for package in LAYERS[index] for m in _modules(package)]
    if not modules:
        pytest.skip(f"{LAYERS[index]} has no modules yet")
    above = [p for layer in LAYERS[index + 1:] for p in layer]
    script = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"above = {above!r}\n"
        "loaded = sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in above))\n"
        "print('\\n'.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing {LAYERS[index]} loaded higher layers:\n{out.stdout}"


def test_every_package_is_in_the_packaging():
    """A package missing from pyproject's list works in the editable install and is absent from the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "anylog_tw").rglob("__init__.py")}
    assert found - listed == set()
