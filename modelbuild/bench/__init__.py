"""bench: latency, size and parity per target.

``modelbuild.bench`` is both this package and the public ``bench()`` function: once a
submodule is imported, Python binds the package to the ``bench`` attribute of
``modelbuild``, so the package itself is callable and forwards to ``modelbuild.api.bench``.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from modelbuild.api import bench

        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
