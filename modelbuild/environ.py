"""os.environ with some variables set for a while, then as it was (no imports of ours)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def environ_with(extra: Mapping[str, str]) -> Iterator[None]:
    """``extra`` set in os.environ inside the block; each variable as it was after (unset
    again where it was unset)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
