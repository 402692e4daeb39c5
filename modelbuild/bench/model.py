"""What `bench` measures and reports: settings, one row per target or baseline, the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BENCH_VERSION = 2  # bump when the way of measuring changes: old results stop matching
EAGER, TRACED = "pytorch-eager", "torchscript-traced"
# Runtimes the worker provides itself (not artifacts): the PyTorch baselines.
BASELINE_RUNTIMES = {"torch-eager": ("torch",), "torch-traced": ("torch",)}
MIN_RUNS = 5  # a time budget never cuts a measurement below this


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    runs: int = 100
    warmup: int = 10
    max_seconds: float = 10.0  # per row, after warm-up; stops early once MIN_RUNS are in

    def keyed(self) -> dict[str, Any]:
        # max_seconds only caps slow models; it is not part of what the figures mean.
        return {"threads": self.threads, "runs": self.runs, "warmup": self.warmup}


@dataclass
class BenchRow:
    """One line of the format table.

    ``status``: ok | not built | failed parity | stale | no runtime | not measured | failed;
    ``message`` says what to do about anything but ok. ``verdict`` is what the build's
    parity gate said: verified | failed parity | spec only | not verified | not built."""

    name: str
    kind: str  # "target" | "baseline"
    format: str
    precision: str
    runtime: str
    status: str = "ok"
    message: str = ""
    cached: bool = False
    measured_at: str | None = None
    path: str | None = None
    digest: str | None = None
    size: int | None = None
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    runs: int | None = None
    load_s: float | None = None
    throughput: float | None = None  # items per second (batch of the first input / median)
    speedup: float | None = None  # PyTorch eager median / this median
    # passed, max_abs, max_rel, cosine (worst output), tolerance, sets_checked, numeric
    parity: dict[str, Any] | None = None
    verdict: str = "-"
    key: str | None = None
    # What the worker needs; not reported.
    job: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def measured(self) -> bool:
        return self.status == "ok" and self.median_ms is not None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("job")
        return out


@dataclass
class BenchReport:
    recipe: str
    settings: Settings
    machine: dict[str, Any]
    rows: list[BenchRow]

    @property
    def ok(self) -> bool:
        return not any(r.status == "failed" for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "ok": self.ok,
            "settings": asdict(self.settings),
            "machine": self.machine,
            "rows": [r.to_json() for r in self.rows],
        }


# -- the machine ------------------------------------------------------------------
