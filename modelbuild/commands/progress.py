"""Build progress on the terminal, with rich (imported only when there is work)."""

from __future__ import annotations

import sys
from typing import Any

from modelbuild.engine.scheduler import ActionResult, Reporter


class TermReporter(Reporter):
    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.console: Any = None
        self.progress: Any = None
        self.task: Any = None
        self.total = 0
        self.pending_cached: list[ActionResult] = []

    def start(self, total: int) -> None:
        self.total = total

    def _ensure(self) -> None:
        if self.console is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        # soft_wrap: long error lines stay whole when piped (grep-able, copy-able).
        self.console = Console(stderr=False, highlight=False, soft_wrap=True)
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]building"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("", total=self.total)
        for r in self.pending_cached:
            self._line(r)
        self.pending_cached = []

    def _line(self, r: ActionResult) -> None:
        style = {"built": "green", "cached": "dim", "failed": "bold red", "skipped": "yellow"}.get(
            r.status, ""
        )
        extra = f" {r.seconds:.2f}s" if r.status == "built" else ""
        why = (
            f"  ({'; '.join(r.reasons)})" if r.reasons and r.status in ("built", "skipped") else ""
        )
        self.console.print(f"[{style}]{r.status:>7}[/] {_escape(r.action.id)}{extra}{_escape(why)}")
        for note in r.meta.get("notices") or []:
            self.console.print(f"[cyan]notice[/] {_escape(r.action.id)}: {_escape(note)}")
        if r.error is not None:
            self.console.print(f"[red]{_escape(r.error.render())}[/]")
        if self.progress is not None:
            self.progress.advance(self.task)

    def running(self, r: ActionResult) -> None:
        self._ensure()
        if self.progress is not None:
            self.progress.update(self.task, description=r.action.id)

    def finished(self, r: ActionResult) -> None:
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

    def stop(self) -> None:
        if self.verbose and self.pending_cached:
            for r in self.pending_cached:
                print(f"{r.status:>7} {r.action.id}")
        if self.progress is not None:
            self.progress.stop()
        sys.stdout.flush()


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
