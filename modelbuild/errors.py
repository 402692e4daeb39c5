"""One error tree for everything modelbuild reports to a user.

    ModelBuildError                 exit code 2 unless said otherwise
    ├── RecipeError                 bad recipe: file, line, column, key path, fix
    ├── UsageError                  bad command line (unknown target, ...)
    ├── PlanError                   a recipe that cannot be planned (format/precision
    │   │                           pair no converter supports)
    │   └── MissingToolchainError   an optional extra is not installed
    ├── SourceError                 the source model cannot be loaded
    ├── CacheError                  a corrupt cache entry (treated as a miss)
    ├── StorageError                a file that cannot be written or read: full disk,
    │                               read-only filesystem, permissions (names the path)
    ├── PublishError                the output folder holds files modelbuild did not write
    └── BuildFailure                exit code 1
        ├── StepError               a converter step raised or crashed
        │   └── ParityError         an artifact's outputs differ from the source's
        └── LockMismatchError       --locked: the build would change model.build.lock

Third-party errors are wrapped with ``raise StepError(...) from exc`` so a user
never sees a bare traceback from a converter.
"""

from __future__ import annotations

from typing import Any


class ModelBuildError(Exception):
    """Root of every error modelbuild raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:  # keep subclasses picklable across worker processes
        return (_rebuild, (type(self), self.__dict__))

    def render(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


def _rebuild(cls: type, state: dict[str, Any]) -> ModelBuildError:
    obj: ModelBuildError = Exception.__new__(cls)
    Exception.__init__(obj, state.get("message", ""))
    obj.__dict__.update(state)
    return obj


class RecipeError(ModelBuildError):
    """A recipe that does not load or validate. Carries where and what to do."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        key_path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.column = column
        self.key_path = key_path

    def render(self) -> str:
        where = self.file or "<recipe>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: "
        if self.key_path:
            text += f"{_clip(self.key_path, 120)}: "
        text += _clip(self.message, 1000)  # a value's repr can be megabytes long
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f"… ({len(text):,} chars)"


class UsageError(ModelBuildError):
    """A command line that asks for something that does not exist."""


class PlanError(ModelBuildError):
    """A valid recipe that cannot be turned into a build plan."""

    def __init__(
        self, message: str, *, key_path: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.key_path = key_path

    def render(self) -> str:
        text = f"{self.key_path}: {self.message}" if self.key_path else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class MissingToolchainError(PlanError):
    """An optional toolchain (extra) is not installed."""

    def __init__(self, toolchain: str, extra: str, *, key_path: str | None = None) -> None:
        super().__init__(
            f"the {toolchain} toolchain is not installed",
            key_path=key_path,
            hint=f"pip install 'modelbuild[{extra}]' -c constraints.txt",
        )
        self.toolchain = toolchain
        self.extra = extra


class SourceError(ModelBuildError):
    """The source model (code or checkpoint) cannot be loaded."""


class CacheError(ModelBuildError):
    """A cache entry is missing or corrupt; callers treat it as a miss."""


class StorageError(ModelBuildError):
    """The disk refused: no space, a read-only filesystem, no permission. Carries the path."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class PublishError(ModelBuildError):
    """Publishing would replace or remove a folder modelbuild did not create."""


class BuildFailure(ModelBuildError):
    """A build that ran and failed: exit code 1."""

    exit_code = 1


class StepError(BuildFailure):
    """A converter step failed; ``log`` names the step's log file."""

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        log: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.log = log

    def render(self) -> str:
        text = f"{self.step}: {self.message}" if self.step else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        if self.log:
            text += f"\n  log: {self.log}"
        return text


class ParityError(StepError):
    """The built artifact does not match the source model within tolerance."""

    def __init__(
        self, message: str, *, report: dict[str, Any] | None = None, step: str | None = None
    ) -> None:
        super().__init__(message, step=step)
        self.report = report or {}


class LockMismatchError(BuildFailure):
    """``build --locked`` / ``plan --check``: the build would change model.build.lock."""

    def __init__(self, diffs: list[Any], *, result: Any = None, lock: str = "") -> None:
        lines = "\n  ".join(str(d) for d in diffs)
        lock = lock or "model.build.lock"  # NAME.build.yaml's is NAME.build.lock
        super().__init__(
            f"the build would change {lock}:\n  {lines}",
            hint=f"run `modelbuild build` without --locked and commit {lock}",
        )
        self.diffs = diffs
        self.result = result
