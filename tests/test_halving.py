"""Successive halving and Hyperband on real runs, locally (the SLURM tier runs ASHA and a
packed sweep: test_halving_slurm.py): 27 points of an experiment whose learning curves cross,
eta 3, rungs of 2, 6 and 18 steps. The winner is the best of the points that reached the last
rung; every promoted point, continued from its own checkpoint rung after rung, ends
bit-identical to a run straight to its final budget; the steps trained add up to the sum of
the final budgets (continuation, never a restart from zero), a quarter of the full grid's."""
import importlib.util
import json
import tempfile
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, run_cli

CURVES = TEST_EXPERIMENTS / "curves.py"
GRID = {"speed": [0.2, 0.4, 0.6], "floor": [0.0, 0.02, 0.04], "lag": [0, 1, 3]}


def sweep_file(tmp_path: Path, **halving) -> Path:
    section = {"budget": "steps", "min": 2, "max": 18, "eta": 3, "metric": "loss", **halving}
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({"grid": GRID, "halving": section}))  # JSON is YAML
    return path


def run_sweep(tmp_path: Path, *options, **halving) -> dict:
    proc = run_cli("sweep", "--root", tmp_path / "root", "--executor", "local", "-j", "2", "--json", *options,
                   "-f", sweep_file(tmp_path, **halving), CURVES, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def points_of(sweep_dir: Path) -> list:
    return json.loads((sweep_dir / "manifest.json").read_text())["points"]


def log_of(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "search.json").read_text())


def steps_trained(storage_dir: str) -> int:
    """What every attempt of a point says it trained (sacred's info.json, steps_run)."""
    return sum(json.loads(info.read_text()).get("steps_run", 0)
               for info in Path(storage_dir, "sacred").glob("*/info.json"))


def straight_run(updates: dict) -> str:
    """The checkpoint of an uninterrupted run of the experiment with these updates, in this process."""
    spec = importlib.util.spec_from_file_location("curves_reference", CURVES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as where:
        module.ex.run(config_updates={**updates, "storage_dir": where}, options={"--loglevel": "ERROR"})
        return (Path(where) / "checkpoints" / "state.json").read_text()


def final_budgets(sweep_dir: Path) -> dict:
    return {p["index"]: p["updates"]["steps"] for p in points_of(sweep_dir)}


def check_exact_and_counted(sweep_dir: Path, promoted: set, at_most: float = 1 / 3) -> None:
    points = points_of(sweep_dir)
    for p in points:
        if p["index"] in promoted:  # continued rung after rung: as if run straight to its budget
            updates = {k: v for k, v in p["updates"].items()}
            assert Path(p["storage_dir"], "checkpoints", "state.json").read_text() == straight_run(updates), p["index"]
    for p in points:  # one attempt per budget the point was asked to train to: none ran twice
        attempts = json.loads(Path(p["storage_dir"], "ptslurm_status.json").read_text())["attempts"]
        assert len(attempts) == max(1, len(p.get("budgets") or [])), (p["index"], p.get("budgets"), attempts)
    trained = sum(steps_trained(p["storage_dir"]) for p in points)
    budgets = sum(p["updates"]["steps"] for p in points)
    grid = len(points) * 18
    print(f"\nsteps trained: {trained} (sum of final budgets {budgets}); the full grid to 18 steps: {grid} "
          f"({trained / grid:.2f}x)")
    assert trained == budgets, "every promoted point continued from its checkpoint, none restarted"
    assert trained <= grid * at_most


def test_successive_halving_keeps_the_best_third_continues_them_exactly_and_trains_a_quarter_of_the_grid(tmp_path):
    summary = run_sweep(tmp_path)
    sweep_dir = Path(summary["sweep_dir"])
    log = log_of(sweep_dir)
    decisions = [(d["rung"], d["points"]) for d in log["decisions"]]
    assert [r for r, _ in decisions] == [0, 1] and [len(p) for _, p in decisions] == [9, 3]
    assert all(d["acted"] for d in log["decisions"])
    values = {tuple(map(int, k.split(":"))): v for k, v in log["values"].items()}
    rung0 = sorted(range(27), key=lambda i: values[(i, 0)])
    assert sorted(decisions[0][1]) == sorted(rung0[:9]), "the best third of rung 0, by the loss there"
    rung1 = sorted(decisions[0][1], key=lambda i: values[(i, 1)])
    assert sorted(decisions[1][1]) == sorted(rung1[:3])
    budgets = final_budgets(sweep_dir)
    assert sorted(budgets.values()) == [2] * 18 + [6] * 6 + [18] * 3
    # the winner: the best of the last rung (not the best of rung 0: the curves cross)
    best = run_cli("collect", "--root", tmp_path / "root", summary["name"], "--best", "loss")
    assert best.returncode == 0, best.stderr
    finals = {i: values[(i, 2)] for i in decisions[1][1]}
    winner = min(finals, key=finals.get)
    assert best.stdout.strip() == points_of(sweep_dir)[winner]["storage_dir"]
    assert "highest rung reached first" in best.stderr
    assert winner != rung0[0], "the curves of this experiment cross: the early leader does not win"
    check_exact_and_counted(sweep_dir, set(decisions[0][1]))
    # what status and collect show
    status = run_cli("status", "--root", tmp_path / "root", summary["name"])
    assert "rung 0 (steps=2): 27, 9 on; rung 1 (steps=6): 9, 3 on; rung 2 (steps=18): 3" in status.stdout
    table = json.loads(run_cli("collect", "--root", tmp_path / "root", summary["name"], "--format", "json").stdout)
    said = {r["index"]: r["halving"] for r in table}
    assert sorted(said.values()).count("final") == 3 and list(said.values()).count("stopped") == 24
    assert all(r["budget"] == budgets[r["index"]] for r in table)
    shown = run_cli("show", "--root", tmp_path / "root", summary["name"], str(winner))
    assert "# budget steps: 2 (sweep) -> 6 (halving decision 1) -> 18 (halving decision 2)" in shown.stderr
    rows = json.loads(status_json := run_cli("status", "--root", tmp_path / "root", summary["name"], "--json").stdout)
    assert {r["index"]: r["halving"] for r in rows} == said and rows[winner]["rung"] == 2, status_json[:300]
    assert f"{winner:<4}" in status.stdout and "2 final" in status.stdout.splitlines()[3 + winner]
    plotted = run_cli("plot", "--root", tmp_path / "root", summary["name"], "--metric", "loss", "-o", tmp_path / "l.png")
    assert plotted.returncode == 0 and "(27 curves)" in plotted.stdout, plotted.stdout + plotted.stderr
    from ptslurm.cli.plot import plot

    marks = [line.get_xdata()[0] for line in plot(sweep_dir, "loss").axes[0].get_lines() if line.get_linestyle() == ":"]
    assert marks == [2, 6, 18], "the plot marks where each rung ends"
    # the same command again: nothing is decided twice
    again = run_sweep(tmp_path)
    assert again["sweep_dir"] == summary["sweep_dir"] and log_of(sweep_dir)["decisions"] == log["decisions"]


def test_hyperband_brackets_start_at_their_rungs_and_halve_within_themselves(tmp_path):
    summary = run_sweep(tmp_path, brackets=3)
    sweep_dir = Path(summary["sweep_dir"])
    log = log_of(sweep_dir)
    first = {p["index"]: p["budgets"][0]["value"] if p.get("budgets") else p["updates"]["steps"]
             for p in points_of(sweep_dir)}
    by_bracket = {b: sorted(i for i, v in first.items() if v == budget) for b, budget in enumerate([2, 6, 18])}
    assert [len(v) for v in by_bracket.values()] == [14, 9, 4]
    got = sorted((d["bracket"], d["rung"], len(d["points"])) for d in log["decisions"])
    assert got == [(0, 0, 4), (0, 1, 1), (1, 1, 3)]
    for d in log["decisions"]:
        assert set(d["points"]) <= set(by_bracket[d["bracket"]])
    promoted = {i for d in log["decisions"] for i in d["points"]}
    check_exact_and_counted(sweep_dir, promoted, at_most=0.5)  # its brackets that start higher cost more


def test_the_halving_flag_makes_the_same_sweep_as_the_section(tmp_path):
    def name(*words):
        proc = run_cli("sweep", "--root", tmp_path / "root", "--executor", "local", "--dry-run", "--json", *words)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["name"]

    grid_only = tmp_path / "grid.yaml"
    grid_only.write_text(json.dumps({"grid": GRID}))
    flag = name("-f", grid_only, "--halving", "budget=steps,min=2,max=18,eta=3,metric=loss", CURVES)
    assert flag == name("-f", sweep_file(tmp_path), CURVES)
    assert flag != name("-f", grid_only, "--halving", "budget=steps,min=2,max=18,eta=3,metric=loss,promotion=async",
                        CURVES)
