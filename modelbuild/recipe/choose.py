"""A target that tries precisions: ``precision: [int8, fp16, fp32]`` with ``choose``.

"Try each precision and test": every candidate is planned as a target of its own
(``NAME@int8``, ``NAME@fp16``, ...: built and put through the parity gate, never
published), and the build publishes one of them as ``NAME``:

    first-passing    the first, in the order written, that passes the gate
    fastest-passing  of those that pass, the one with the lowest median latency

The lock entry of ``NAME`` is the chosen candidate's, with ``choice``: the rule, the
chosen precision, and every candidate's figures and why it was or was not chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelbuild.errors import RecipeError

RULES = ("first-passing", "fastest-passing")
SEP = "@"  # NAME@PRECISION: a candidate's name (target names cannot hold '@')


@dataclass(frozen=True)
class Choice:
    target: str
    rule: str
    precisions: tuple[str, ...]

    def candidate(self, precision: str) -> str:
        return f"{self.target}{SEP}{precision}"

    @property
    def candidates(self) -> list[str]:
        return [self.candidate(p) for p in self.precisions]


def first_candidate(
    name: str, t: dict[str, Any], positions: dict[tuple[str, ...], Any], file: str
) -> dict[str, Any]:
    """The target as its format's typed params read it: a precision list becomes one of its
    entries (the planner plans each candidate), ``choose`` is dropped."""

    def where(key_path: tuple[str, ...]) -> dict[str, Any]:
        kp = key_path
        while kp and kp not in positions:
            kp = kp[:-1]
        p = positions.get(kp)
        return {
            "file": p.file if p else file,
            "line": p.line if p else None,
            "column": p.column if p else None,
            "key_path": ".".join(key_path),
        }

    prec = t.get("precision")
    if "choose" in t and not isinstance(prec, list):
        raise RecipeError(
            "`choose` picks one of several precisions, and this target has one",
            hint="write precision: [int8, fp16, fp32], or remove `choose`",
            **where(("targets", name, "choose")),
        )
    if not isinstance(prec, list):
        return t
    if len(set(prec)) != len(prec):
        raise RecipeError(
            f"precision {prec} names a precision twice",
            hint="list each precision once, in the order to try them",
            **where(("targets", name, "precision")),
        )
    # int8 when listed: its settings (quantize, calibration) are then checked as int8's
    typed = "int8" if "int8" in prec else prec[0]
    return {**{k: v for k, v in t.items() if k != "choose"}, "precision": typed}


def choices_of(recipe: Any) -> dict[str, Choice]:
    """Targets of a loaded recipe that list precisions."""
    out: dict[str, Choice] = {}
    for name, t in (recipe.data.get("targets") or {}).items():
        if isinstance(t, dict) and isinstance(t.get("precision"), list):
            rule = str(t.get("choose", RULES[0]))
            out[name] = Choice(name, rule, tuple(str(p) for p in t["precision"]))
    return out


INT8_ONLY = ("quantize", "calibration", "preset", "model_type")  # target keys of int8 alone


def variants(recipe: Any, names: list[str], choices: dict[str, Choice]) -> list[tuple[str, Any]]:
    """(target name, typed target) to plan: a precision list gives NAME@PRECISION each."""
    from modelbuild.formats import check_target

    out: list[tuple[str, Any]] = []
    for name in names:
        t = recipe.targets[name]
        if name not in choices:
            out.append((name, t))
            continue
        for prec in choices[name].precisions:
            # int8's settings (calibration, quantize, ...) belong to the int8 candidate only
            drop = {} if prec == "int8" else {k: None for k in INT8_ONLY if hasattr(t, k)}
            cand = replace(t, precision=prec, **drop)
            if prec != t.precision:  # that one was checked when the recipe loaded
                check_target(recipe, name, cand)
            out.append((choices[name].candidate(prec), cand))
    return out


def settle_candidates(
    choices: dict[str, Choice],
    names: list[str],
    targets: dict[str, Any],
    errors: dict[str, Any],
    locked: dict[str, Any],
) -> tuple[dict[str, Choice], dict[str, Any]]:
    """After planning: the choices asked for, and the candidates that cannot be planned
    (moved out of ``errors``: a rejected candidate is not an error of the build). Until the
    build chooses, a choice target stands for the candidate the lock says was chosen
    (``locked``: the lock's targets; `plan --check` and `build --locked` compare with it),
    else its first plannable one."""
    from modelbuild.errors import PlanError

    chosen = {n: c for n, c in choices.items() if n in names}
    rejected = {n: errors.pop(n) for n in [n for n in errors if SEP in n]}
    for name, c in chosen.items():
        entry = locked.get(name) if isinstance(locked.get(name), dict) else {}
        was = ((entry or {}).get("choice") or {}).get("chosen")
        order = [c.candidate(was)] if was in c.precisions else []
        first = next((targets[n] for n in order + c.candidates if n in targets), None)
        if first is not None:
            targets[name] = replace(first, name=name)
        else:
            errors[name] = PlanError(
                "no candidate precision can be planned: "
                + "; ".join(rejected[n].message for n in c.candidates if n in rejected),
                key_path=f"targets.{name}.precision",
            )
    return chosen, rejected
