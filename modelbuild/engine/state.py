"""Per-recipe memory of the last key ingredients of each action, for `plan`'s reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from modelbuild.store.cache import Cache
from modelbuild.store.hashing import atomic_write_bytes, digest_json


class State:
    """Per-recipe memory of the last keys (for `plan`'s reasons), in the cache."""

    def __init__(self, cache: Cache, recipe_path: Path) -> None:
        self.path = cache.root / "state" / f"{digest_json(str(recipe_path))[:24]}.json"
        self.data: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = None
        # Valid JSON of another shape is no memory at all, not a crash.
        if isinstance(data, dict) and isinstance(data.get("actions"), dict):
            self.data = data
        self.dirty = False

    def get(self, action_id: str) -> dict[str, Any] | None:
        entry = self.data.get("actions", {}).get(action_id)
        return cast("dict[str, Any]", entry) if isinstance(entry, dict) else None

    def put(self, action_id: str, key: str, ingredients: dict[str, Any]) -> None:
        acts = self.data.setdefault("actions", {})
        cur = acts.get(action_id)
        if cur is None or cur.get("key") != key:
            acts[action_id] = {"key": key, **ingredients}
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            atomic_write_bytes(self.path, json.dumps(self.data, sort_keys=True).encode())
            self.dirty = False
