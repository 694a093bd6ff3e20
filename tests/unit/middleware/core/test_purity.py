"""The pure core takes data and returns data: importing it loads no Redis client, no broker."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import middleware.core

CORE_MODULES = sorted(
    f"middleware.core.{info.name}" for info in pkgutil.iter_modules(middleware.core.__path__)
)

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
IO = ("redis", "dramatiq", "sentry_sdk", "openai")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in IO)))
"""


def test_the_core_has_the_modules_the_layout_promises() -> None:
    assert {
        "middleware.core.classify",
        "middleware.core.decisions",
        "middleware.core.errors",
        "middleware.core.facts",
        "middleware.core.backoff",
    } <= set(CORE_MODULES)


def test_importing_every_core_module_loads_neither_redis_nor_dramatiq() -> None:
    found = subprocess.run(
        [sys.executable, "-c", _PROBE, *CORE_MODULES],
        check=True,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "[]", f"the pure core imported {found.stdout.strip()}"
