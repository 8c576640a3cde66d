"""What ptslurm relies on in sacred and submitit (ptslurm/plan/sacred_adapter.py and
ptslurm/schedulers/submitit_adapter.py): each adapter's check passes on the installed versions and fails
loudly, naming the part and the tested range, when an upgrade changes it; and the behaviour
we copy from sacred matches sacred's own."""
import re
import textwrap

import pytest

from ptslurm.plan import sacred_adapter
from ptslurm.schedulers import submitit_adapter

pytestmark = pytest.mark.fast


def test_the_installed_versions_have_everything_ptslurm_relies_on():
    assert re.match(r"0\.8\.\d+$", sacred_adapter.check())
    assert re.match(r"1\.5\.\d+$", submitit_adapter.check())


def test_a_sacred_upgrade_that_drops_an_internal_fails_loudly(monkeypatch):
    sacred = sacred_adapter.sacred()
    monkeypatch.delattr(sacred.Experiment, "_create_run")
    monkeypatch.delattr(sacred.initialize, "distribute_presets")
    with pytest.raises(sacred_adapter.AdapterError) as caught:
        sacred_adapter.check()
    message = str(caught.value)
    assert "Experiment._create_run is gone" in message and "distribute_presets is gone" in message
    assert sacred_adapter.TESTED in message and "sacred_adapter.py" in message


def test_a_submitit_upgrade_that_changes_the_batch_script_maker_fails_loudly(monkeypatch):
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm, "_make_sbatch_string", lambda command, folder: "")
    with pytest.raises(submitit_adapter.AdapterError, match="_make_sbatch_string no longer takes map_count.*"
                                                            + re.escape(submitit_adapter.TESTED)):
        submitit_adapter.check()


EXPERIMENT = textwrap.dedent('''
    from sacred import Experiment, Ingredient

    data = Ingredient("data")

    @data.config
    def data_config():
        size = 10
        path = f"/data/{size}"

    ex = Experiment("adapter-probe", ingredients=[data])

    @ex.config
    def config():
        lr = 0.1
        layers = [8, 8]
        trainer = {"epochs": 2, "optimizer": {"lr": lr}}

    @ex.named_config
    def big():
        layers = [64, 64, 64]
        data = {"size": 100}

    @ex.config_hook
    def hook(config, command_name, logger):
        return {"trainer": {"steps": config["trainer"]["epochs"] * 10}}

    @ex.main
    def main(lr):
        return lr
''')


@pytest.mark.parametrize("updates,named", [({}, ()), ({"lr": 0.5, "data.size": 3}, ("big",)),
                                           ({"trainer.epochs": 7, "seed": 11}, ())])
def test_build_config_gives_exactly_the_config_sacred_runs_with(tmp_path, updates, named):
    from ptslurm.plan import experiment

    path = tmp_path / "probe.py"
    path.write_text(EXPERIMENT)
    _, ex = experiment.load(path)
    updates = dict(updates, seed=updates.get("seed", 5))
    ours, added, own_seed = sacred_adapter.build_config(ex, updates, named)
    theirs = sacred_adapter.create_run(ex, updates, named).config
    assert ours == theirs and added == set() and own_seed
    assert ours["trainer"]["steps"] == ours["trainer"]["epochs"] * 10  # the config hook ran
    _, added, _ = sacred_adapter.build_config(ex, {"lrr": 1})
    assert added == {"lrr"}
    with pytest.raises(KeyError, match="unknown named config 'huge' \\(available: big\\)"):
        sacred_adapter.build_config(ex, {}, ("huge",))


def test_with_values_parse_as_on_sacreds_command_line():
    from sacred.arg_parser import _convert_value

    for text in ("1e-3", "[1,2]", "'text'", "word", "{'a': (1, 2)}", "None", "True"):
        assert sacred_adapter.convert_value(text) == _convert_value(text)


def test_the_log_path_is_where_submitits_batch_script_writes(tmp_path):
    script = submitit_adapter.batch_script(tmp_path, 4, {"job_name": "x", "signal_delay_s": 120,
                                                         "stderr_to_stdout": True, "time": None})
    assert "#SBATCH --array=0-3" in script and "--time" not in script
    output = re.search(r"#SBATCH --output=(\S+)", script).group(1)
    expected = output.replace("%A", "12").replace("%a", "3").replace("%j", "12_3").replace("%t", "0")
    assert str(submitit_adapter.log_path(tmp_path, "12_3")) == expected


def test_one_requeue_protocol_submitit_never_requeues_on_its_own_count(tmp_path):
    submitter = submitit_adapter.ArraySubmitter(tmp_path, {"job_name": "x"})
    assert submitter.executor.max_num_timeout == submitit_adapter.SUBMITIT_REQUEUES == 0


def test_setup_cfg_pins_the_ranges_the_adapters_were_tested_with():
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    requires = cfg["options"]["install_requires"].split()
    assert sacred_adapter.TESTED in requires and submitit_adapter.TESTED in requires


PARALLEL = EXPERIMENT.replace("\n@ex.main\n", textwrap.dedent('''
    @ex.named_config
    def stop():
        import sys
        sys.exit(3)  # a scope that exits the process building it

    @ex.main
'''))


def preflights(tmp_path, monkeypatch, points):
    """Calls of the pre-flight of ``points``: built in this process, built in forked workers
    (three of them: 13 points, 4 a worker at least), and the worker counts asked for."""
    from ptslurm.plan import experiment

    path = tmp_path / "probe.py"
    path.write_text(PARALLEL)
    _, ex = experiment.load(path)
    dirs = [f"/runs/probe/{p.index + 1}" for p in points]
    monkeypatch.setattr(experiment, "_cores", lambda: 3)
    forked = []
    monkeypatch.setattr(experiment, "_in_parallel", lambda *a, f=experiment._in_parallel: forked.append(a[-1])
                        or f(*a))

    def build(every):
        monkeypatch.setattr(experiment, "PARALLEL_FROM", every)
        return experiment.preflight(ex, points, ["storage_dir"], dirs)

    return lambda: build(10 ** 9), lambda: build(4), forked


def test_configs_built_in_forked_workers_are_those_built_in_one_process(tmp_path, monkeypatch):
    from ptslurm.records.spec import Point

    points = [Point(index=i, updates={"lr": 0.1 * i, **({"seed": i} if i % 2 else {})},
                    named_configs=("big",) if i % 3 == 0 else ()) for i in range(13)]
    serial, parallel, forked = preflights(tmp_path, monkeypatch, points)

    def fixed(built):  # sacred draws the seed of a point that sets none: each build differently
        default, configs, inject, seeds = built
        drawn = [dict(c, seed=None) if s is None else c for c, s in zip(configs, seeds)]
        return dict(default, seed=None), drawn, inject, seeds

    one = serial()
    assert forked == []
    assert fixed(parallel()) == fixed(one) and forked == [3], "three workers built the same configs and seeds"
    assert one[3][:2] == [None, 1] and one[1][3]["layers"] == [64, 64, 64]
    assert [c["lr"] for c in one[1]] == [0.1 * i for i in range(13)]


@pytest.mark.parametrize("bad", [{5: {"lrr": 1}, 11: {"lrr": 2}}, {11: {"lrr": 2}}])
def test_the_first_failing_point_is_named_whichever_worker_built_it(tmp_path, monkeypatch, bad):
    from ptslurm.errors import ExperimentError
    from ptslurm.records.spec import Point

    points = [Point(index=i, updates=bad.get(i, {"lr": 0.1})) for i in range(13)]
    first = min(bad)
    serial, parallel, forked = preflights(tmp_path, monkeypatch, points)
    for build in serial, parallel:
        with pytest.raises(ExperimentError, match=rf"^point {first} \(.*\): unknown config key 'lrr'"):
            build()
    assert forked == [3]


def test_a_scope_that_exits_in_a_worker_exits_as_it_does_without_workers(tmp_path, monkeypatch):
    from ptslurm.records.spec import Point

    points = [Point(index=i, updates={}, named_configs=("stop",) if i == 9 else ()) for i in range(13)]
    serial, parallel, forked = preflights(tmp_path, monkeypatch, points)
    for build in serial, parallel:
        with pytest.raises(SystemExit) as caught:
            build()
        assert caught.value.code == 3
    assert forked == [3]
