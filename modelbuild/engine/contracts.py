"""What the planner checks and derives per action and target: a step's typed params
contract (``check_params``) and the tolerance a target's parity check is held to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelbuild.errors import PlanError
from modelbuild.params import to_mapping

if TYPE_CHECKING:
    from modelbuild.recipe.load import Recipe


def tolerance_for(recipe: Recipe, target: Any) -> dict[str, Any]:
    from modelbuild.recipe.model import DEFAULT_TOLERANCES

    base = to_mapping(getattr(DEFAULT_TOLERANCES, target.precision))
    custom = (recipe.verify.tolerance or {}).get(target.precision)
    if custom is not None:
        base = {k: v for k, v in to_mapping(custom).items() if v is not None} or base
    if target.verify is not None and target.verify.tolerance is not None:
        over = {k: v for k, v in to_mapping(target.verify.tolerance).items() if v is not None}
        base = over or base
    return {k: v for k, v in base.items() if v is not None}


def check_params(step: str, params: dict[str, Any]) -> None:
    """The step's typed contract: every param the planner passes is a declared field of the
    step's ``Params`` (and converts), so a misspelt param fails here, not silently in a key."""
    from modelbuild.params import UnknownParams, from_mapping
    from modelbuild.step import UNKEYED_PARAMS, get_step

    cls = get_step(step).Params
    try:
        from_mapping(cls, {k: v for k, v in params.items() if k not in UNKEYED_PARAMS})
    except (UnknownParams, TypeError) as exc:
        raise PlanError(
            f"step {step} was planned with params its contract does not declare: {exc}",
            hint="a bug in modelbuild's planner for this format: please report it",
        ) from exc
