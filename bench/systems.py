"""The contenders, each able to run the four scenarios of issue 6 in order:

    full ─ no-op ─ incremental (int8 per_channel false→true) ─ touched checkpoint

Every scenario is a fresh subprocess timed from outside (interpreter start
included), in a workspace of its own under the bench's temp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import dvc_pipeline
import workload
from timing import (
    PYTHON,
    Sample,
    Series,
    base_env,
    dvc_ran,
    modelbuild_cmd,
    modelbuild_ran,
    run_timed,
    touch,
)

SCENARIOS = ("full", "noop", "incremental", "touched")


class System:
    """A contender; subclasses define setup() and run_once()."""

    label = "?"
    # Whether a repeated no-op/touched run is worth its time (the plain script redoes everything).
    cheap_repeats = True

    def __init__(self, work: Path, targets: list[str]) -> None:
        self.work = work
        self.targets = targets

    def setup(self) -> None:
        raise NotImplementedError

    def run_once(self) -> Sample:
        raise NotImplementedError

    def set_per_channel(self, on: bool) -> None:
        raise NotImplementedError

    def checkpoint(self) -> Path:
        raise NotImplementedError

    def measure(self, repeat: int, log: Callable[[str], None] = print) -> dict[str, Series]:
        """The four scenarios in order for this contender alone."""
        self.setup()
        return interleaved([self], repeat, log)[0]

    def prepare(self, scenario: str, first: bool) -> None:
        """Make the change a scenario is about, before its run."""
        if scenario == "incremental" and first:
            self.set_per_channel(True)
        elif scenario == "touched":
            touch(self.checkpoint())

    def _logged(
        self, scenario: str, log: Callable[[str], None], keep_output: bool = False
    ) -> Sample:
        s = self.run_once()
        if not keep_output:
            s.output = None
        ran = "" if s.ran is None else f", {s.ran} ran"
        log(f"  {self.label:<24} {scenario:<12} {s.seconds:7.3f} s{ran}")
        return s


def interleaved(
    systems: list[System],
    repeat: int,
    log: Callable[[str], None] = print,
    load: dict[str, float] | None = None,
) -> list[dict[str, Series]]:
    """Scenario by scenario, each contender in turn (round-robin over repeats), so a change
    in the machine's load during the bench hits every column alike. No-op and touched run
    ``repeat`` times where cheap; the incremental change is made once. Set-up is the caller's.
    ``load`` gets the 1-minute load average at the start of each scenario."""
    out: list[dict[str, Series]] = [{s: Series() for s in SCENARIOS} for _ in systems]
    for scenario in SCENARIOS:
        if load is not None:
            load[scenario] = os.getloadavg()[0]
        reps = repeat if scenario in ("noop", "touched") else 1
        for rep in range(reps):
            for sys_, series in zip(systems, out, strict=False):
                if rep and not sys_.cheap_repeats:
                    continue
                sys_.prepare(scenario, first=rep == 0)
                series[scenario].add(sys_._logged(scenario, log, keep_output=scenario == "full"))
    return out


class ModelBuild(System):
    """`modelbuild build -j N` on a temp copy of examples/tiny_cnn with a private cache."""

    def __init__(self, work: Path, targets: list[str], verify: bool, jobs: int = 2) -> None:
        super().__init__(work, targets)
        self.verify = verify
        self.jobs = jobs
        self.label = "modelbuild" + ("" if verify else " (verify off)")
        self.ws = work / ("mb" if verify else "mb-noverify")
        self.env = base_env({"MODELBUILD_CACHE": str(work / (self.ws.name + "-cache"))})
        self.per_channel = False
        self.code_extra: list[str] = []

    def setup(self) -> None:
        workload.copy_example(self.ws)
        self._write()

    def _write(self) -> None:
        workload.write_recipe(self.ws, self.targets, self.verify, self.per_channel, self.code_extra)

    def set_per_channel(self, on: bool) -> None:
        self.per_channel = on
        self._write()

    def add_code_file(self, src: Path) -> None:
        """Put a (large) file into `source.code`, hard-linked into the workspace."""
        dst = self.ws / src.name
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copyfile(src, dst)
        self.code_extra = [src.name]
        self._write()

    def checkpoint(self) -> Path:
        return self.ws / workload.CHECKPOINT

    def run_once(self) -> Sample:
        seconds, output = run_timed(
            [*modelbuild_cmd(), "build", "-j", str(self.jobs)], self.ws, self.env
        )
        return Sample(seconds, modelbuild_ran(output), output[-8000:])


class PlainScript(System):
    """bench/plain_export.py: every format re-exported on every run."""

    label = "plain script"
    cheap_repeats = False

    def __init__(self, work: Path, targets: list[str]) -> None:
        super().__init__(work, targets)
        self.ws = work / "plain"
        self.per_channel = False
        # OpenVINO telemetry off, as modelbuild turns it off (runtimes/openvino_rt.py).
        self.env = base_env({"CI": "true", "NNCF_CI": "1"})

    def setup(self) -> None:
        workload.copy_example(self.ws)

    def set_per_channel(self, on: bool) -> None:
        self.per_channel = on

    def checkpoint(self) -> Path:
        return self.ws / workload.CHECKPOINT

    def run_once(self) -> Sample:
        cmd = [
            PYTHON,
            str(dvc_pipeline.BENCH / "plain_export.py"),
            str(self.ws),
            str(self.ws / "out"),
            "--formats",
            ",".join(self.targets),
        ]
        if self.per_channel:
            cmd.append("--int8-per-channel")
        seconds, _ = run_timed(cmd, self.ws, self.env)
        return Sample(seconds, len(self.targets))


class DvcPipeline(System):
    """`dvc repro` over one stage per artifact (bench/dvc_pipeline.py)."""

    label = "dvc repro"

    def __init__(self, work: Path, targets: list[str], dvc: str) -> None:
        super().__init__(work, targets)
        self.dvc = dvc
        self.ws = work / "dvc"
        self.env = base_env(dvc_pipeline.dvc_env(self.ws))

    def setup(self) -> None:
        src = workload.copy_example(self.work / "dvc-src")
        dvc_pipeline.layout(self.ws, src, self.targets)
        for cmd in dvc_pipeline.init_commands(self.dvc):
            run_timed(cmd, self.ws, self.env)

    def set_per_channel(self, on: bool) -> None:
        dvc_pipeline.write_params(self.ws, on)

    def checkpoint(self) -> Path:
        return self.ws / workload.CHECKPOINT

    def run_once(self) -> Sample:
        seconds, output = run_timed([self.dvc, "repro"], self.ws, self.env)
        return Sample(seconds, dvc_ran(output))
