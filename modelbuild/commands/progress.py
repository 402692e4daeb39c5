"""Build progress on the terminal, with rich (imported only when there is work).

On a terminal: a bar with done/total and the elapsed time, and one line per running
action with its own elapsed time. Piped (CI logs): one line when an action starts, one
when it finishes, and a heartbeat line for every action still running after
``heartbeat`` seconds (30 by default; ``MODELBUILD_HEARTBEAT`` overrides), so a log
never sits silent on a long conversion. Action names are escaped: ``verify[onnx]``
prints as itself, not as rich markup.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from modelbuild.commands.figures import parity_text
from modelbuild.engine.results import ActionResult, Reporter

DEFAULT_HEARTBEAT = 30.0


class TermReporter(Reporter):
    def __init__(self, verbose: bool = False, heartbeat: float | None = None) -> None:
        self.verbose = verbose
        env = os.environ.get("MODELBUILD_HEARTBEAT")
        self.heartbeat = heartbeat or (float(env) if env else DEFAULT_HEARTBEAT)
        self.console: Any = None
        self.progress: Any = None
        self.task: Any = None
        self.total = 0
        self.done = 0
        self.started_at = time.monotonic()
        self.pending_cached: list[ActionResult] = []
        self.running_tasks: dict[str, Any] = {}  # action id → rich task (terminal)
        self.since: dict[str, float] = {}  # action id → start time
        self.said: set[str] = set()  # notices printed (the export and the reference load alike)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.beat: threading.Thread | None = None

    def start(self, total: int) -> None:
        self.total = total
        self.started_at = time.monotonic()

    def _ensure(self) -> None:
        if self.console is not None:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class OverallOnly(ProgressColumn):
            """The bar and done/total on the overall line; running actions show their
            spinner, name and elapsed time only."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def render(self, task: Any) -> Any:
                return self.inner.render(task) if task.total is not None else Text("")

        # soft_wrap: long error lines stay whole when piped (grep-able, copy-able).
        self.console = Console(stderr=False, highlight=False, soft_wrap=True)
        if self.console.is_terminal:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                OverallOnly(BarColumn()),
                OverallOnly(MofNCompleteColumn()),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("[bold]building[/]", total=self.total)
        else:
            self.beat = threading.Thread(target=self._heartbeat, daemon=True)
            self.beat.start()
        for r in self.pending_cached:
            self._line(r)
        self.pending_cached = []

    def _print(self, text: str) -> None:
        with self.lock:
            self.console.print(text)
            if self.progress is None:
                self.console.file.flush()

    def _count(self) -> str:
        return f"[{self.done}/{self.total}]" if self.progress is None else ""

    def _line(self, r: ActionResult) -> None:
        from rich.markup import escape

        style = {"built": "green", "cached": "dim", "failed": "bold red", "skipped": "yellow"}.get(
            r.status, ""
        )
        extra = f" {r.seconds:.2f}s" if r.status == "built" else ""
        why = (
            f"  ({'; '.join(r.reasons)})" if r.reasons and r.status in ("built", "skipped") else ""
        )
        figures = ""
        if r.action.step == "verify" and r.status in ("built", "cached"):
            text = parity_text(r.meta.get("report"))
            figures = f"  (verified: {text})" if text else "  (verified)"
        count = escape(self._count())
        self._print(
            f"[{style}]{r.status:>7}[/] {escape(r.action.id)}{extra}{escape(why)}"
            f"{escape(figures)} {count}".rstrip()
        )
        for note in r.meta.get("notices") or []:
            if note in self.said:
                continue
            self.said.add(note)
            self._print(f"[cyan]notice[/] {escape(r.action.id)}: {escape(note)}")
        if r.error is not None:
            self._print(f"[red]{escape(r.error.render())}[/]")
        if self.progress is not None:
            self.progress.advance(self.task)

    def running(self, r: ActionResult) -> None:
        from rich.markup import escape

        self._ensure()
        aid = r.action.id
        with self.lock:
            self.since[aid] = time.monotonic()
        if self.progress is not None:
            self.running_tasks[aid] = self.progress.add_task(f"  {escape(aid)}", total=None)
        else:
            self._print(f"  [bold]start[/] {escape(aid)} {escape(self._count())}")

    def _end(self, r: ActionResult) -> None:
        with self.lock:
            self.since.pop(r.action.id, None)
        task = self.running_tasks.pop(r.action.id, None)
        if task is not None and self.progress is not None:
            self.progress.remove_task(task)

    def finished(self, r: ActionResult) -> None:
        self._end(r)
        self.done += 1
        if r.status == "cached" and self.console is None:
            if self.verbose:
                self.pending_cached.append(r)
            return
        if r.status == "cached" and not self.verbose:
            if self.progress is not None:
                self.progress.advance(self.task)
            return
        self._ensure()
        self._line(r)

    def _heartbeat(self) -> None:
        """Piped output: say what is still running, every ``heartbeat`` seconds."""
        from rich.markup import escape

        step = min(1.0, self.heartbeat)
        last: dict[str, float] = {}
        while not self.stopping.wait(step):
            now = time.monotonic()
            with self.lock:
                running = dict(self.since)
            for aid, t0 in running.items():
                if now - t0 >= self.heartbeat and now - last.get(aid, t0) >= self.heartbeat:
                    last[aid] = now
                    self._print(
                        f"[dim]running[/] {escape(aid)} {now - t0:.0f}s "
                        f"{escape(f'[{self.done}/{self.total}]')}"
                    )

    def stop(self) -> None:
        self.stopping.set()
        if self.beat is not None:
            self.beat.join(timeout=2)
        if self.verbose and self.pending_cached:
            for r in self.pending_cached:
                print(f"{r.status:>7} {r.action.id}")
        if self.progress is not None:
            self.progress.stop()
        sys.stdout.flush()
