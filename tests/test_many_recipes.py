"""Many recipes in one command (issue 15.4): `build ./...` and `build -f 'GLOB'`.

One walk over one pool and one cache for all of them (engine/multi.py): an action two
recipes share runs once, the recipes' actions interleave, a failing recipe leaves the
others built; a repository where nothing changed is answered by the no-op fast path for
every recipe without importing YAML or any framework. (The time of a 100-recipe no-op is measured in
bench/scale.py, not asserted here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_example, run_cli, statuses, write_recipe

TS = {"ts": {"format": "torchscript", "method": "trace"}}


@pytest.fixture
def repo(tmp_path: Path, cache_dir: Path) -> Path:
    """Two recipes of one model side by side (models/tiny/alpha.build.yaml, beta.build.yaml),
    as a team keeps a server and an edge variant: the same source and trace settings."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    folder = copy_example("tiny_cnn", root / "models")
    for name in ("alpha", "beta"):
        path = write_recipe(folder, TS, name=f"{name}.build.yaml", output_dir=f"dist-{name}")
        path.write_text(path.read_text().replace("name: tiny-cnn", f"name: {name}"))
    (folder / "model.build.yaml").unlink()
    return root


def _build(repo: Path, *args: str, check: int = 0) -> dict:
    return json.loads(run_cli(["build", "--json", *args], repo, check=check).stdout)


def test_build_dot_dot_dot_builds_every_recipe_over_one_pool_and_shares_actions(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_scale import COUNTER

    code = repo / "models" / "tiny_cnn" / "models" / "tiny_cnn.py"
    code.write_text(code.read_text() + COUNTER)
    log = repo / "models.log"
    monkeypatch.setenv("MB_MODEL_LOG", str(log))
    out = _build(repo, "./...", "-j", "2")
    assert out["ok"] and [Path(r["file"]).name for r in out["recipes"]] == [
        "alpha.build.yaml",
        "beta.build.yaml",
    ]
    first, second = (statuses(r) for r in out["recipes"])
    # one walk, and an action both recipes need is one node: it ran for one of them (at
    # -j 2 both could have started it at once), the other's copy waited on that run
    for step in ("make_inputs", "reference", "torchscript_from_torch", "verify[ts]"):
        assert sorted([first[step], second[step]]) == ["built", "cached"], (step, first, second)
    # one pool for both recipes: no worker built the shared source model twice
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)) <= 2, pids
    # the same source, inputs and trace settings: one action, one cache entry
    a, b = (r["targets"]["ts"]["digest"] for r in out["recipes"])
    assert a == b, "recipes sharing an action must get the same bytes"
    entries = list((repo.parent / "cache" / "actions").glob("*/*.json"))
    steps = [json.loads(e.read_text())["step"] for e in entries]
    assert steps.count("torchscript_from_torch") == 1 and steps.count("reference") == 1, steps
    for name in ("alpha", "beta"):
        assert (repo / "models" / "tiny_cnn" / f"dist-{name}" / "ts" / "model.pt").is_file()
    # a third recipe of the same model, built on its own now: its actions are hits
    beta = repo / "models" / "tiny_cnn" / "beta.build.yaml"
    gamma = beta.with_name("gamma.build.yaml")
    gamma.write_text(
        beta.read_text().replace("name: beta", "name: gamma").replace("dist-beta", "dist-gamma")
    )
    # the glob form names the same recipes; nothing to do now
    again = _build(repo, "-f", "models/**/*.build.yaml")
    assert again["ok"] and len(again["recipes"]) == 3
    assert all(set(statuses(r).values()) == {"cached"} for r in again["recipes"][:2])


def test_two_recipes_actions_interleave_in_one_walk(repo: Path) -> None:
    """engine/multi: the recipes are one walk, not one after the other. The in-process
    runner makes the order of the events both engines report deterministic: a recipe
    after another would start nothing before the first one's last action finished."""
    from modelbuild import api
    from modelbuild.engine import multi
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.results import ActionResult, Reporter
    from modelbuild.engine.runners import InProcessRunner

    folder = repo / "models" / "tiny_cnn"
    beta = folder / "beta.build.yaml"  # other inputs: its own make_inputs, reference, verify
    beta.write_text(beta.read_text().replace("samples: 4", "samples: 4\n  seed: 7"))
    events: list[tuple[str, str, str]] = []

    class Log(Reporter):
        def __init__(self, name: str) -> None:
            self.name = name

        def running(self, r: ActionResult) -> None:
            events.append((self.name, "running", r.action.id))

        def finished(self, r: ActionResult) -> None:
            events.append((self.name, "finished", r.action.id))

    class Counting(InProcessRunner):  # the real in-process runner, counting what it is given
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[str] = []

        def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
            self.steps.append(job["step"])
            return super().submit(uid, job, frameworks)

    parts = []
    for name in ("alpha", "beta"):
        r = api.load_recipe(folder / f"{name}.build.yaml")
        p = make_plan(r, ["ts"])
        parts.append(multi.Part(p, api.cache_for(r), ["ts"], {"reporter": Log(name)}))
    runner = Counting()
    alpha, beta_r = multi.build_all(parts, runner)
    # one node: the export both need was handed to the runner once (a second submission
    # would have found the first's cache entry under the action lock: "cached" as well)
    assert runner.steps.count("torchscript_from_torch") == 1, runner.steps
    assert runner.steps.count("reference") == 2, runner.steps
    assert not isinstance(alpha, Exception) and not isinstance(beta_r, Exception)
    assert alpha.ok and beta_r.ok, (alpha, beta_r)
    at = {n: [i for i, e in enumerate(events) if e[0] == n] for n in ("alpha", "beta")}
    starts = {n: [i for i in at[n] if events[i][1] == "running"] for n in at}
    assert min(starts["beta"]) < max(at["alpha"]) and min(starts["alpha"]) < max(at["beta"]), events
    a, b = ({x.action.id: x.status for x in res.actions} for res in (alpha, beta_r))
    # the export is the same action for both (one run), the rest is each recipe's own
    assert sorted([a["torchscript_from_torch"], b["torchscript_from_torch"]]) == ["built", "cached"]
    assert a["reference"] == b["reference"] == "built" and a["verify[ts]"] == b["verify[ts]"]
    assert (folder / "dist-beta" / "ts" / "model.pt").is_file()


def test_one_recipe_failing_leaves_the_others_built_published_and_locked(repo: Path) -> None:
    folder = repo / "models" / "tiny_cnn"
    bad = folder / "alpha.build.yaml"  # its checkpoint does not fit: the model load fails
    bad.write_text(bad.read_text().replace("num_classes: 10", "num_classes: 7"))
    out = _build(repo, "./...", "-j", "2", check=2)  # no --keep-going; a recipe error
    alpha, beta = out["recipes"]
    assert not out["ok"] and not alpha["ok"] and beta["ok"], out
    assert "failed" in statuses(alpha).values()
    assert "does not match the model" in json.dumps(alpha)
    # the first recipe's failure did not stop the second: built, published, locked
    ran = statuses(beta)  # make_inputs is the same action for both: alpha's run served it
    assert set(ran.values()) <= {"built", "cached"} and ran["torchscript_from_torch"] == "built"
    assert (folder / "dist-beta" / "ts" / "model.pt").is_file()
    assert not (folder / "dist-alpha" / "ts").exists()
    lock = json.loads((folder / "beta.build.lock").read_text())
    assert lock["targets"]["ts"]["digest"] == beta["targets"]["ts"]["digest"]


def test_a_no_op_over_many_recipes_is_a_no_op(repo: Path) -> None:
    folder = repo / "models" / "tiny_cnn"
    beta = (folder / "beta.build.yaml").read_text()
    for name in ("gamma", "delta", "epsilon", "zeta"):
        text = beta.replace("name: beta", f"name: {name}").replace("dist-beta", f"dist-{name}")
        (folder / f"{name}.build.yaml").write_text(text)
    first = _build(repo, "./...", "-j", "2")
    assert first["ok"] and len(first["recipes"]) == 6
    _build(repo, "./...")  # publishing linked shared objects: states re-recorded (see below)

    def stamps() -> dict[str, int]:
        files = [*repo.rglob("dist-*/**/*"), *repo.rglob("*.build.lock")]
        files += list((repo.parent / "cache" / "actions").rglob("*.json"))
        return {str(f): f.stat().st_mtime_ns for f in files if f.is_file()}

    before = stamps()
    proc = run_cli(["build", "./..."], repo)
    assert "6 recipes: 6 with nothing to do, 0 built" in proc.stdout, proc.stdout
    assert stamps() == before  # nothing run, published, locked or cached again
    # the environment's stamps (modelbuild's code, sys.path) are one file for all states
    state = repo.parent / "cache" / "state"
    (name,) = {json.loads(p.read_text())["env"] for p in state.glob("noop-*.json")}
    env = state / f"noop-env-{name}.stamps"
    assert env.is_file()
    env.write_text('{"stamps": 7}')  # unreadable as stamps: a miss, and the build repairs it
    proc = run_cli(["build", "./..."], repo)
    assert "6 recipes: 0 with nothing to do, 6 built" in proc.stdout, proc.stdout
    proc = run_cli(["build", "./..."], repo)
    assert "6 recipes: 6 with nothing to do, 0 built" in proc.stdout, proc.stdout


def test_a_no_op_over_many_recipes_loads_no_yaml_and_no_framework(repo: Path) -> None:
    _build(repo, "./...")
    # beta's publish linked the objects alpha shares (a new ctime): alpha's no-op state is
    # re-recorded by this second pass, from the stat cache (nothing re-hashed, nothing run)
    second = _build(repo, "./...")
    assert all(set(statuses(r).values()) == {"cached"} for r in second["recipes"])
    code = (
        "import json, sys\n"
        "from modelbuild.commands.main import main\n"
        "rc = main(['build', './...'])\n"
        "heavy = ('yaml', 'torch', 'onnx', 'onnxruntime', 'networkx', 'numpy')\n"
        "print(json.dumps({'rc': rc, 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "loaded": []}, proc.stdout + proc.stderr
    assert "2 recipes: 2 with nothing to do" in proc.stdout


def test_a_pattern_that_matches_no_recipe_is_a_usage_error(repo: Path) -> None:
    proc = run_cli(["build", "-f", "nowhere/**/*.build.yaml"], repo, check=2)
    assert "no recipe matches" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(["build", "empty/..."], repo, check=2)
    assert "no recipe matches" in proc.stderr


def test_a_failing_recipe_fails_the_command_and_names_itself(repo: Path) -> None:
    bad = repo / "models" / "tiny_cnn" / "beta.build.yaml"
    bad.write_text(bad.read_text().replace("opset:", "opsett:"))
    proc = run_cli(["build", "./..."], repo, check=2)
    assert "beta.build.yaml" in proc.stderr and "opsett" in proc.stderr


def test_sibling_recipes_are_read_once_each_and_again_when_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading every recipe of a folder checks each against all the others' output folders:
    each sibling is parsed once per process (n, not n² YAML loads), and again when its
    stat changes."""
    import yaml

    from modelbuild.store import publish

    loads: list[str] = []
    real = yaml.safe_load

    def counted(text: str) -> object:
        loads.append(text)
        return real(text)

    monkeypatch.setattr(yaml, "safe_load", counted)
    sibling = tmp_path / "a.build.yaml"  # publishes to dist/a/<target> by default
    sibling.write_text("targets: {ts: {format: torchscript}}\noutput_dir: out-a\n")
    me = tmp_path / "model.build.yaml"  # its target `a` publishes to dist/a
    me.write_text("targets: {a: {format: torchscript}}\n")
    for _ in range(3):
        assert publish.output_dir_problem(me, "dist", ["a"], []) is None
    assert len(loads) == 2, loads  # the sibling and the recipe itself, once each
    sibling.write_text("targets: {ts: {format: torchscript}}\n")  # now it is dist/a/ts
    problem = publish.output_dir_problem(me, "dist", ["a"], [])
    assert problem is not None and "a.build.yaml" in problem and "overlaps" in problem
    problem = publish.output_dir_problem(me, "dist-other", ["a"], [])
    assert problem is None


def test_locked_and_dry_run_over_many_recipes_check_and_plan_each_one(repo: Path) -> None:
    folder = repo / "models" / "tiny_cnn"
    _build(repo, "./...", "-j", "2")
    locks = {n: (folder / f"{n}.build.lock").read_bytes() for n in ("alpha", "beta")}
    for n in ("alpha", "beta"):  # beta's actions were alpha's runs, re-keyed with imports:
        # its lock has the keys its own plan computes (it once kept the pre-import key)
        done = run_cli(["plan", "--check", "-f", f"models/tiny_cnn/{n}.build.yaml"], repo)
        assert f"{n}.build.lock is up to date" in done.stdout, done.stdout
    same = _build(repo, "./...", "--locked")  # every recipe planned against its own lock
    assert same["ok"] and [r["ok"] for r in same["recipes"]] == [True, True], same
    beta = folder / "beta.build.yaml"
    beta.write_text(beta.read_text().replace("method: trace", "method: script"))

    out = _build(repo, "./...", "--locked", check=1)
    alpha_r, beta_r = out["recipes"]
    assert not out["ok"] and alpha_r["ok"] and not beta_r["ok"], out
    assert "would change beta.build.lock" in json.dumps(beta_r) and "ts" in json.dumps(beta_r)
    for name, before in locks.items():  # neither lock file written
        assert (folder / f"{name}.build.lock").read_bytes() == before, name

    proc = run_cli(["build", "./...", "--dry-run"], repo)
    text = proc.stdout
    assert "== models/tiny_cnn/alpha.build.yaml" in text
    assert "== models/tiny_cnn/beta.build.yaml" in text
    alpha_part, beta_part = text.split("== models/tiny_cnn/beta.build.yaml")
    assert "run " not in alpha_part and "0 to run" in alpha_part, text
    assert "run     torchscript_from_torch" in beta_part, text
    plans = _build(repo, "./...", "--dry-run")
    assert plans["ok"] and len(plans["recipes"]) == 2
    assert (folder / "beta.build.lock").read_bytes() == locks["beta"]  # a plan writes nothing
    alpha_p, beta_p = ({a["id"]: a["status"] for a in r["actions"]} for r in plans["recipes"])
    assert set(alpha_p.values()) == {"cached"}, alpha_p
    assert beta_p["torchscript_from_torch"] != "cached", beta_p
