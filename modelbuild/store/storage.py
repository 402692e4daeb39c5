"""What the disk said, as a person reads it: an OSError from a full disk, a read-only
filesystem or missing permissions becomes one StorageError that names the path and what
to do; any other OSError is left as it is (a bug or a race, not the user's disk)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from modelbuild.errors import StorageError

_SAY = {
    errno.ENOSPC: (
        "no space left on the device",
        "free space there, or point "
        "MODELBUILD_CACHE at a larger disk; what was built so far stays cached",
    ),
    errno.EDQUOT: (
        "the disk quota is exceeded",
        "free space, or point MODELBUILD_CACHE at another disk; what was built so far stays cached",
    ),
    errno.EROFS: (
        "the filesystem is read-only",
        "point MODELBUILD_CACHE at a writable folder (or remount it read-write)",
    ),
    errno.EACCES: (
        "permission denied",
        "fix its permissions (chmod u+rw) or owner, or "
        "point MODELBUILD_CACHE at a folder of your own",
    ),
    errno.EPERM: ("operation not permitted", "fix its permissions or owner"),
    errno.ELOOP: ("too many levels of symbolic links (a symlink loop)", "fix the symlink"),
    errno.ENAMETOOLONG: ("the file name is too long", "use a shorter path or name"),
}
STORAGE_ERRNOS = frozenset(_SAY)


def storage_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> StorageError | None:
    """The StorageError for ``exc``, or None when it is not about the disk."""
    if exc.errno not in _SAY:
        return None
    what, hint = _SAY[exc.errno]
    where = exc.filename if exc.filename is not None else path
    shown = str(Path(os.fsdecode(where))) if where is not None else None
    msg = f"{what}: {shown}" if shown else what
    return StorageError(msg, path=shown, hint=hint)


def reraise(exc: OSError, path: str | os.PathLike[str] | None = None) -> None:
    """Raise ``exc`` as a StorageError when it is one (else return: the caller re-raises)."""
    err = storage_error(exc, path)
    if err is not None:
        raise err from exc
