"""The command language: grammar, registry, replies, and one module of commands per area.

Every module in this package other than the infrastructure ones (grammar, values, registry, reply) registers its commands
when imported; `load_commands()` imports them all, so adding an area is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from anylog_tw.base.registry import REGISTRY

_INFRASTRUCTURE: set[str] = set()


def load_commands():
    """Import every command module and return the registry they filled."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _INFRASTRUCTURE and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
