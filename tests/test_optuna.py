"""Optuna proposes a sweep's random values (ask-and-tell, TPE), with the study in a journal file
in the sweep dir and nothing else running: every trial is a point in its own storage dir,
whose config holds the trial's values and whose result is told back; a sweep command killed
right after an ask leaves an orphan trial that the same command run again gives to the next
point: no trial asked twice, none lost. Locally and on the SLURM cluster (30 trials, 4 at a
time, decided by the points' own jobs)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, run_cli, wait_for

CURVES = TEST_EXPERIMENTS / "curves.py"


def spec(tmp_path: Path, trials: int, parallel: int) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({
        "fixed": {"steps": 4},
        "random": {"samples": trials, "seed": 3, "speed": {"type": "uniform", "min": 0.1, "max": 0.7},
                   "floor": {"type": "loguniform", "min": 0.001, "max": 0.1},
                   "lag": {"type": "randint", "min": 0, "max": 4}},
        "optuna": {"sampler": "tpe", "parallel": parallel, "metric": "loss"}}))
    return path


def sweep_cmd(tmp_path, trials, parallel, *options):
    return [sys.executable, "-m", "ptslurm", "sweep", "--root", str(tmp_path / "root"), "--json", *options,
            "-f", str(spec(tmp_path, trials, parallel)), str(CURVES)]


def study_of(sweep_dir: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.load_study(study_name=sweep_dir.name, storage=storage)


def check_trials(sweep_dir: Path, trials: int) -> None:
    """Each trial asked once, given to one point, run with its values, told its result."""
    from optuna.trial import TrialState

    study = study_of(sweep_dir)
    assert len(study.trials) == trials, "no trial asked twice (nor one too many)"
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    mapping = json.loads((sweep_dir / "search.json").read_text())["trials"]
    assert sorted(mapping.values()) == list(range(trials)) and len(mapping) == trials, "none lost, one point each"
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    for index, number in mapping.items():
        trial, point = study.trials[number], manifest["points"][int(index)]
        config = json.loads(Path(point["storage_dir"], "config.json").read_text())
        assert {k: config[k] for k in trial.params} == trial.params
        state = json.loads(Path(point["storage_dir"], "checkpoints", "state.json").read_text())
        assert trial.value == state["loss"]
    dirs = [p["storage_dir"] for p in manifest["points"]]
    assert len(set(dirs)) == trials


def test_a_local_optuna_search_asks_as_results_come_in_and_survives_a_kill_after_an_ask(tmp_path, no_slurm):
    killed = subprocess.run(sweep_cmd(tmp_path, 8, 2, "-j", "2"), capture_output=True, text=True,
                            env={**os.environ, "PTSLURM_FAILPOINT": "asked"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    sweep_dir = next((tmp_path / "root" / "sweeps").iterdir())
    recorded = json.loads((sweep_dir / "search.json").read_text()) if (sweep_dir / "search.json").exists() else {}
    assert len(study_of(sweep_dir).trials) == 1 and not recorded.get("trials"), \
        "killed between the ask and its record: an orphan trial"
    done = subprocess.run(sweep_cmd(tmp_path, 8, 2, "-j", "2"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check_trials(sweep_dir, 8)
    table = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
    assert [r["state"] for r in table] == ["completed"] * 8
    mapping = json.loads((sweep_dir / "search.json").read_text())["trials"]
    assert {r["index"]: r["trial"] for r in table} == {int(i): n for i, n in mapping.items()}


@pytest.mark.slurm
def test_thirty_trials_four_at_a_time_on_slurm_survive_a_killed_sweep_command(slurm_cluster, tmp_path):
    killed = subprocess.run(sweep_cmd(tmp_path, 30, 4), capture_output=True, text=True,
                            env={**os.environ, "PTSLURM_FAILPOINT": "asked"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    again = subprocess.run(sweep_cmd(tmp_path, 30, 4), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    sweep_dir = Path(json.loads(again.stdout)["sweep_dir"])

    def most_running():
        rows = json.loads(run_cli("status", sweep_dir, "--json").stdout)
        going = sum(r["state"] in ("pending", "running") for r in rows)
        assert going <= 4, f"at most 4 trials at once: {going}"
        return all(r["state"] == "completed" for r in rows)
    wait_for("30 trials", most_running, timeout=600, every=1)
    wait_for("the last result told", lambda: all(t.state.name == "COMPLETE" for t in study_of(sweep_dir).trials),
             timeout=120, every=1)
    check_trials(sweep_dir, 30)
    outs = [p.read_text() for p in (sweep_dir / "slurm").glob("*_0_log.out")]
    assert not any("successive halving" in o for o in outs), "every point's own decider ran cleanly"
    asked_by = json.loads((sweep_dir / "search.json").read_text()).get("asked_by", {})
    assert any(by.startswith("job ") for by in asked_by.values()), "the points' jobs ask as they end"
