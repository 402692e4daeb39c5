"""Plain-text tables and the goal checks of issue 6, from the results dict run.py builds."""

from __future__ import annotations

import statistics
from typing import Any

SCENARIO_LABELS = {
    "full": "full build",
    "noop": "no-op",
    "incremental": "int8 setting changed",
    "touched": "checkpoint touched",
}
COLUMNS = (
    ("mb", "modelbuild"),
    ("mb_noverify", "mb verify-off"),
    ("plain", "plain script"),
    ("dvc", "dvc repro"),
)
RATIOS = (("mb", "plain"), ("mb", "dvc"), ("mb_noverify", "plain"), ("mb_noverify", "dvc"))
SHORT = {"mb": "mb", "mb_noverify": "off", "plain": "plain", "dvc": "dvc"}


def render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            ).rstrip()
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def median(results: dict[str, Any], system: str, scenario: str) -> float | None:
    s = results["systems"].get(system) or {}
    cell = s.get(scenario)
    return cell["median_s"] if isinstance(cell, dict) and "median_s" in cell else None


def scenario_table(results: dict[str, Any]) -> str:
    present = [
        (k, label)
        for k, label in COLUMNS
        if k in results["systems"] and "skipped" not in results["systems"][k]
    ]
    ratios = [
        (a, b)
        for a, b in RATIOS
        if any(a == k for k, _ in present) and any(b == k for k, _ in present)
    ]
    if not present:
        return "(no build contender measured)"
    loads = results.get("loadavg_by_scenario") or []
    head = (
        ["scenario"]
        + [label for _, label in present]
        + [f"{SHORT[a]}÷{SHORT[b]}" for a, b in ratios]
        + (["load"] if loads else [])
    )
    rows = [head]
    for sc, label in SCENARIO_LABELS.items():
        row = [label]
        for k, _ in present:
            cell = results["systems"][k][sc]
            ran = next((r for r in cell["ran"] if r is not None), None)
            row.append(f"{cell['median_s']:.3f} s" + (f" [{ran}]" if ran is not None else ""))
        for a, b in ratios:
            x, y = median(results, a, sc), median(results, b, sc)
            row.append(ratio(x, y))
        if loads:
            row.append("/".join(f"{ld[sc]:.1f}" for ld in loads if sc in ld))
        rows.append(row)
    return render(rows)


def ratio(x: float | None, y: float | None) -> str:
    if x is None or not y:
        return "–"
    r = x / y
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.3f}×"


def actions_table(results: dict[str, Any]) -> str:
    """The full build's actions with the seconds each took in its worker, against the wall
    time: what is left over is start-up, planning, worker spawn and waiting."""
    from timing import modelbuild_actions

    cols = [
        (k, label)
        for k, label in COLUMNS[:2]
        if (results["systems"].get(k) or {}).get("full", {}).get("output")
    ]
    if not cols:
        return "(no modelbuild full build measured)"
    per = {k: dict(modelbuild_actions(results["systems"][k]["full"]["output"])) for k, _ in cols}
    names = list(dict.fromkeys(n for k, _ in cols for n in per[k]))
    rows = [["action (full build)"] + [label for _, label in cols]]
    for n in names:
        rows.append([n] + [f"{per[k][n]:.2f} s" if n in per[k] else "–" for k, _ in cols])
    rows.append(["sum of actions"] + [f"{sum(per[k].values()):.2f} s" for k, _ in cols])
    rows.append(
        ["wall"] + [f"{results['systems'][k]['full']['samples_s'][0]:.2f} s" for k, _ in cols]
    )
    return render(rows)


def startup_table(results: dict[str, Any]) -> str:
    rows = [["command", "median", "runs"]]
    for name, cell in results.get("startup", {}).items():
        rows.append([name, f"{cell['median_s'] * 1000:.0f} ms", str(len(cell["samples_s"]))])
    return render(rows)


def hashing_table(results: dict[str, Any]) -> str:
    h = results.get("hashing")
    if not h:
        return "(hashing skipped)"
    size = h["size_bytes"]
    mem = h["memory_Bps"]
    rows = [["hash of a %.2f GB file" % (size / 1e9), "time", "GB/s", "÷ in-memory"]]
    rows.append(
        ["sha256 in memory (hashlib, one core; issue: ~1.16)", "–", f"{mem / 1e9:.2f}", "1.00"]
    )
    for key, label in (
        (
            "first_disk_s",
            "first hash, pages evicted (disk)"
            if h["evicted"]
            else "first hash (eviction unavailable)",
        ),
        ("first_cached_s", "first hash, in page cache"),
        ("statcache_miss_s", "cold = StatCache miss (stat + hash)"),
    ):
        rate = size / h[key]
        rows.append([label, f"{h[key]:.3f} s", f"{rate / 1e9:.2f}", f"{rate / mem:.2f}"])
    rows.append(
        [
            "warm = StatCache hit (fresh load + stat)",
            f"{h['statcache_hit_s'] * 1e6:.0f} µs",
            "–",
            "–",
        ]
    )
    big = results.get("big_noop")
    if big:
        rows.append(
            ["mb build after adding it to source.code", f"{big['first_build_s']:.3f} s", "–", "–"]
        )
        rows.append(["mb no-op with it − no-op without", f"{big['added_ms']:+.1f} ms", "–", "–"])
    return render(rows)


def plain_run(results: dict[str, Any]) -> float | None:
    """The plain script's time: the median of all its runs, since every run (whatever the
    scenario) re-exports everything; one sample alone is at the mercy of the machine's load."""
    s = results["systems"].get("plain") or {}
    runs = [x for sc in SCENARIO_LABELS if isinstance(s.get(sc), dict) for x in s[sc]["samples_s"]]
    return statistics.median(runs) if runs else None


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's goals that this run measured: name, value, limit, unit, passed."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float | None, unit: str) -> None:
        if value is not None and limit is not None:
            out.append(
                {
                    "goal": name,
                    "value": value,
                    "limit": limit,
                    "unit": unit,
                    "passed": value <= limit,
                }
            )

    add("no-op wall (interpreter start included)", median(results, "mb", "noop"), 0.1, "s")
    help_cell = results.get("startup", {}).get("modelbuild --help")
    add("modelbuild --help", help_cell["median_s"] if help_cell else None, 0.1, "s")
    add("incremental int8 change", median(results, "mb", "incremental"), 1.0, "s")
    plain = plain_run(results)
    if plain:
        add(
            "full, verify off ≤ ½ plain script run",
            median(results, "mb_noverify", "full"),
            plain / 2,
            "s",
        )
        add("full, verify on ≤ plain script run", median(results, "mb", "full"), plain, "s")
    h = results.get("hashing")
    if h:
        # "Cold" = no stat-cache entry, every byte hashed (StatCache miss); "at the speed
        # sha256 allows" = within 10% of hashlib on data already in memory, same run.
        add(
            "cold hash (StatCache miss) ≤ 1.1× in-memory sha256 time",
            h["statcache_miss_s"] / (h["size_bytes"] / h["memory_Bps"]),
            1 / 0.9,
            "×",
        )
    big = results.get("big_noop")
    if big:
        add(
            f"warm hash of a {big['size_bytes'] / 1e9:.2f} GB file adds to a no-op",
            big["added_ms"],
            10.0,
            "ms",
        )
    return out


def goals_table(gs: list[dict[str, Any]]) -> str:
    rows = [["goal", "measured", "limit", ""]]
    for g in gs:
        fmt = "{:.3f} {}" if g["unit"] in ("s", "×") else "{:.1f} {}"
        rows.append(
            [
                g["goal"],
                fmt.format(g["value"], g["unit"]),
                fmt.format(g["limit"], g["unit"]),
                "PASS" if g["passed"] else "MISS",
            ]
        )
    return render(rows)
