"""`ptslurm command SWEEP N` prints the command that runs a point by hand (seml's
print-command). Checked against sacred itself: the printed command, run by a shell, builds the
config the point ran with and computes its result."""
import json
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES, run_cli

TYPED = '''
from sacred import Experiment
ex = Experiment("typed")

@ex.config
def config():
    name = "adam"
    layers = [64, 64]
    lr = 1e-3
    use_bn = True
    extra = None
    storage_dir = None

@ex.named_config
def big():
    layers = [256, 256, 256]

@ex.automain
def main(name, layers, lr, use_bn, extra, _seed):
    return f"{name}|{layers}|{lr}|{use_bn}|{extra}|{_seed}"
'''


def _by_hand(command: str, observe: Path) -> dict:
    python = str(Path(sys.executable))
    shell = command.replace("python ", f"{python} ", 1) + f" -F {observe}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (shell, done.stderr)
    run_dir = observe / "1"
    return {"config": json.loads((run_dir / "config.json").read_text()),
            "result": json.loads((run_dir / "run.json").read_text())["result"]}


def test_the_printed_command_builds_the_points_config_and_result_in_sacred(tmp_path, no_slurm):
    exp = tmp_path / "proj" / "typed.py"
    exp.parent.mkdir()
    exp.write_text(TYPED)
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", exp, "with", "big",
                   "name=['sgd','a b \"c\"']", "lr=[1e-4]", "use_bn=False", "extra={'k': [1, 2]}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for point in summary["points"]:
        command = run_cli("command", summary["sweep_dir"], str(point["index"]))
        assert command.returncode == 0 and command.stdout.startswith("python "), command.stderr
        by_hand = _by_hand(command.stdout.strip(), tmp_path / f"observe-{point['index']}")
        ran = json.loads((Path(point["storage_dir"]) / "config.json").read_text())
        ran.pop("storage_dir"), by_hand["config"].pop("storage_dir")
        assert by_hand["config"] == ran, command.stdout
        status = json.loads((Path(point["storage_dir"]) / "ptslurm_status.json").read_text())
        assert by_hand["result"] == status["attempts"][-1]["result"]


def test_the_snapshot_command_runs_the_code_the_point_ran(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "steps=20")
    summary = json.loads(proc.stdout)
    command = run_cli("command", summary["sweep_dir"], "0", "--snapshot").stdout.strip()
    assert command.startswith(f"cd {summary['sweep_dir']}/code && python ")
    by_hand = _by_hand(command, tmp_path / "observe")
    status = json.loads((Path(summary["points"][0]["storage_dir"]) / "ptslurm_status.json").read_text())
    assert by_hand["result"] == status["attempts"][-1]["result"]
