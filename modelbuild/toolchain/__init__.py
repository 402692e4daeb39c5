"""Pinned toolchain environments: a step may run in its own Python environment.

    toolchains/NAME.in     what the environment needs (pip requirement lines, edited by hand)
    toolchains/NAME.lock   its exact pins, made by ``uv pip compile`` (``modelbuild toolchain
                           sync NAME``), committed; its sha256 enters the key of every action
                           that runs in it
    modelbuild.toml        ``[toolchains]``: step name → environment name

The environment itself lives in the cache (``cache/toolchains/NAME-<digest>/``), built with
``uv venv`` + ``uv pip sync NAME.lock`` on first use (or by ``toolchain sync``); ``build
--no-sync`` refuses a missing one with the command that builds it. A lock whose first line
is ``# modelbuild: layered`` is layered on the environment modelbuild runs in: its own
pins come first on ``sys.path``, the base environment's packages (modelbuild included)
after them, so a small lock overrides a few distributions without reinstalling torch.

Light on purpose: the keys import this module on every build.
"""

from __future__ import annotations

from modelbuild.toolchain.envs import (
    LAYERED,
    Toolchain,
    Toolchains,
    activate,
    active,
    for_step,
)

__all__ = ["LAYERED", "Toolchain", "Toolchains", "activate", "active", "for_step"]
