"""OpenVINO and NNCF without their network telemetry (used by the step, runtime, inspector)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from modelbuild.environ import environ_with

# openvino_telemetry (imported by `import openvino`, and by convert_model and NNCF on
# every call) posts usage events to the network unless it sees a CI; builds make no
# network calls, so every OpenVINO/NNCF import and conversion runs inside this.
_NO_TELEMETRY = {"CI": "true", "NNCF_CI": "1"}


@contextlib.contextmanager
def no_telemetry() -> Iterator[None]:
    with environ_with(_NO_TELEMETRY):
        yield
