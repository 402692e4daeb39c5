"""OpenVINO and NNCF without their network telemetry (used by the step, runtime, inspector)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# openvino_telemetry (imported by `import openvino`, and by convert_model and NNCF on
# every call) posts usage events to the network unless it sees a CI; builds make no
# network calls, so every OpenVINO/NNCF import and conversion runs inside this.
_NO_TELEMETRY = {"CI": "true", "NNCF_CI": "1"}


@contextlib.contextmanager
def no_telemetry() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _NO_TELEMETRY}
    os.environ.update(_NO_TELEMETRY)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
