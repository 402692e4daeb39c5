"""Fault injection for the crash-safety tests.

With MODELBUILD_FAULT=NAME set, the first process that reaches ``point(NAME)``
SIGKILLs its whole process group (the build and its workers), as an OOM killer
or a pulled plug would. Unset, ``point`` is one dict lookup.
"""

from __future__ import annotations

import os
import signal

_FAULT = os.environ.get("MODELBUILD_FAULT")


def point(name: str) -> None:
    if _FAULT is not None and name == _FAULT:
        os.killpg(os.getpgrp(), signal.SIGKILL)
