"""Optuna's ask-and-tell (``plan.optuna_search``) on the fake scheduler, in seconds: what
test_optuna runs locally and on the SLURM cluster. A sweep file's ``optuna:`` section is
refused field by field with the fix; the sweep queues ``parallel`` trials with the values
Optuna asked, inside the space; each ended point's result is told (a failed one as a failed
trial) and the next waiting points are asked for; a decider killed right after an ask leaves
an orphan trial that the next decider gives to the next point."""
import json
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, end_point, fake_sweep
from test_halving import log_of, points_of

from ptslurm import records
from ptslurm.errors import SpecError
from ptslurm.plan import optuna_search, sweepfile
from ptslurm.plan.make import plan
from ptslurm.records.spec import Resources
from ptslurm.schedulers.backends import FakeCluster
from ptslurm.submit import promote
from ptslurm.submit.sweep import SweepRequest

pytestmark = pytest.mark.fast
optuna = pytest.importorskip("optuna")

SPACE = {"samples": 6, "seed": 3, "speed": {"type": "uniform", "min": 0.1, "max": 0.7},
         "floor": {"type": "loguniform", "min": 0.001, "max": 0.1}, "lag": {"type": "randint", "min": 0, "max": 4}}


def section(**optuna_fields):
    return {"fixed": {"steps": 4}, "random": SPACE, "optuna": {"sampler": "tpe", "parallel": 2, "metric": "loss",
                                                                 **optuna_fields}}


@pytest.mark.parametrize("fields, message", [
    ({"sampler": "bayes"}, "optuna: sampler must be one of tpe, cmaes, gp, random, qmc, got 'bayes'"),
    ({"parallel": 0}, "optuna: parallel (trials running at once) must be a positive whole number, got 0"),
    ({"parallel": True}, "optuna: parallel (trials running at once) must be a positive whole number, got True"),
    ({"parallel": 1.5}, "optuna: parallel (trials running at once) must be a positive whole number, got 1.5"),
    ({"metric": ""}, "optuna: metric must name a sacred metric (or result:min / result:max)"),
    ({"metric": 3}, "optuna: metric must name a sacred metric (or result:min / result:max)"),
    ({"seed": "x"}, "optuna: seed must be a whole number, got 'x'"),
    ({"seed": False}, "optuna: seed must be a whole number, got False"),
    ({"trials": 3}, "optuna: unknown field 'trials' (valid: sampler, parallel, metric, seed)"),
])
def test_a_bad_optuna_section_is_refused_naming_the_field_and_the_fix(fields, message):
    with pytest.raises(SpecError) as err:
        sweepfile.parse(section(**fields))
    assert message in err.value.message


def test_optuna_needs_a_random_space_and_chooses_only_among_plain_values():
    with pytest.raises(SpecError, match=r"optuna: Optuna searches the space of a `random:` section"):
        sweepfile.parse({"fixed": {"steps": 4}, "optuna": {"sampler": "tpe"}})
    with pytest.raises(SpecError, match=r"expected a mapping like"):
        sweepfile.parse({"random": SPACE, "optuna": ["tpe"]})
    lists = {**SPACE, "hidden": {"type": "choice", "options": [[64], [32, 32]]}}
    with pytest.raises(SpecError, match=r"hidden: Optuna chooses among numbers, strings, booleans and None"):
        sweepfile.parse({"random": lists, "optuna": {}})


def test_the_section_kept_in_the_manifest_has_its_defaults_and_the_space():
    kept = optuna_search.parse({}, "optuna", sweepfile.parse({"random": SPACE}).random)
    assert kept == {"sampler": "tpe", "parallel": 4, "metric": "loss", "seed": 3, "trials": 6,
                    "space": {k: v for k, v in SPACE.items() if k not in ("samples", "seed")}}
    assert optuna_search.parse({"seed": 9}, "optuna", sweepfile.parse({"random": SPACE}).random)["seed"] == 9


def test_the_distributions_are_optunas_with_randints_max_left_out():
    dists = optuna_search._distributions({**{k: v for k, v in SPACE.items() if isinstance(v, dict)},
                                          "act": {"type": "choice", "options": ["relu", None, 2]}})
    assert dists["speed"] == optuna.distributions.FloatDistribution(0.1, 0.7, log=False)
    assert dists["floor"] == optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
    assert dists["lag"] == optuna.distributions.IntDistribution(0, 3)
    assert dists["act"] == optuna.distributions.CategoricalDistribution(["relu", None, 2])


@pytest.mark.parametrize("name, kind", [("tpe", "TPESampler"), ("cmaes", "CmaEsSampler"), ("random", "RandomSampler"),
                                        ("qmc", "QMCSampler")])
def test_each_sampler_named_is_the_one_optuna_runs(name, kind):
    assert type(optuna_search._sampler({"sampler": name, "seed": 1, "trials": 30}, 0)).__name__ == kind


def test_the_sampler_seed_moves_with_each_ask_so_no_two_decisions_draw_alike():
    draws = [optuna_search._sampler({"sampler": "random", "seed": 5, "trials": 6}, asked)._rng.rng.random()
             for asked in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("optuna-root")
    spec = root / "sweep.yaml"
    spec.write_text(json.dumps(section()))
    p = plan(SweepRequest(experiment=str(TEST_EXPERIMENTS / "curves.py"), sweep_file=str(spec), root=str(root),
                          name="template", resources=Resources(timeout_min=10)), scheduler_given=True)
    yield p
    p.discard()


def trials(sweep_dir: Path) -> dict:
    s = optuna.load_study(study_name=json.loads((sweep_dir / records.MANIFEST).read_text())["name"],
                          storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
                              str(sweep_dir / optuna_search.JOURNAL))))
    return {t.number: t for t in s.get_trials()}


def in_space(updates: dict) -> bool:
    return (0.1 <= updates["speed"] <= 0.7 and 0.001 <= updates["floor"] <= 0.1 and updates["lag"] in range(4)
            and updates["steps"] == 4)


def test_the_sweep_queues_parallel_trials_with_the_values_optuna_asked(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "first", cluster)
    log, known = log_of(sweep_dir), trials(sweep_dir)
    assert log["trials"] == {"0": 0, "1": 1} and log["asked_by"] == {"0": "sweep", "1": "sweep"}
    assert sorted(cluster.point_jobs(sweep_dir)) == [0, 1], "parallel: 2 trials at a time"
    for entry in points_of(sweep_dir)[:2]:
        assert in_space(entry["updates"])
        assert {k: entry["updates"][k] for k in ("speed", "floor", "lag")} == known[log["trials"][str(entry["index"])]].params
    assert all(t.state == optuna.trial.TrialState.RUNNING for t in known.values()) and len(known) == 2


def test_ended_points_are_told_and_the_next_waiting_points_asked_for(planned):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "tell", cluster)
    end_point(cluster, sweep_dir, 0, 0.25)
    end_point(cluster, sweep_dir, 1, 0.5, state="failed")
    assert promote.decide(sweep_dir, make=cluster.backend, by="job 100_0") == []
    log, known = log_of(sweep_dir), trials(sweep_dir)
    assert known[0].state == optuna.trial.TrialState.COMPLETE and known[0].value == 0.25
    assert known[1].state == optuna.trial.TrialState.FAIL
    assert log["trials"] == {"0": 0, "1": 1, "2": 2, "3": 3} and log["asked_by"]["2"] == "job 100_0"
    assert {i: len(j) for i, j in cluster.point_jobs(sweep_dir).items()} == {0: 1, 1: 1, 2: 1, 3: 1}
    assert all(in_space(points_of(sweep_dir)[i]["updates"]) for i in (2, 3))
    calls = cluster.sbatch_calls
    promote.decide(sweep_dir, make=cluster.backend)
    assert log_of(sweep_dir)["trials"] == log["trials"] and cluster.sbatch_calls == calls, "nothing asked twice"


def test_a_decider_killed_after_an_ask_leaves_a_trial_the_next_decider_gives_to_the_next_point(planned, monkeypatch):
    cluster = FakeCluster()
    _, sweep_dir = fake_sweep(planned, "orphan", cluster)
    end_point(cluster, sweep_dir, 0, 0.3)

    class Killed(KeyboardInterrupt):
        pass

    def die(name):
        if name == "asked":
            raise Killed()

    monkeypatch.setattr(promote, "failpoint", die)
    with pytest.raises(Killed):
        promote.decide(sweep_dir, make=cluster.backend)
    assert log_of(sweep_dir)["trials"] == {"0": 0, "1": 1} and len(trials(sweep_dir)) == 3, "asked, not recorded"
    monkeypatch.setattr(promote, "failpoint", lambda name: None)
    promote.decide(sweep_dir, make=cluster.backend)
    log, known = log_of(sweep_dir), trials(sweep_dir)
    assert log["trials"] == {"0": 0, "1": 1, "2": 2} and len(known) == 3, "the orphan went to point 2, none asked anew"
    assert {k: points_of(sweep_dir)[2]["updates"][k] for k in ("speed", "floor", "lag")} == known[2].params
    assert sorted(cluster.point_jobs(sweep_dir)) == [0, 1, 2]


def test_a_maximised_metric_makes_a_maximising_study(tmp_path):
    assert optuna_search.study(tmp_path, "s", {"sampler": "random", "seed": 1, "trials": 3}, "max").direction == \
        optuna.study.StudyDirection.MAXIMIZE
    assert optuna_search.study(tmp_path, "t", {"sampler": "random", "seed": 1, "trials": 3}, "min").direction == \
        optuna.study.StudyDirection.MINIMIZE
    assert (tmp_path / optuna_search.JOURNAL).exists()


@pytest.mark.parametrize("trials, startup", [(30, 10), (60, 10), (6, 2), (2, 1), (1, 1)])
def test_tpe_explores_at_random_for_a_third_of_the_trials_at_most_ten(trials, startup):
    assert optuna_search._sampler({"sampler": "tpe", "seed": 1, "trials": trials}, 0)._n_startup_trials == startup


@pytest.mark.parametrize("name", ["tpe", "cmaes", "random"])
def test_every_seeded_sampler_draws_from_the_sweeps_seed_and_the_asks_so_far(name):
    def first_draw(seed, asked):
        sampler = optuna_search._sampler({"sampler": name, "seed": seed, "trials": 30}, asked)
        rng = {"tpe": lambda: sampler._rng.rng, "cmaes": lambda: sampler._cma_rng.rng,
               "random": lambda: sampler._rng.rng}[name]()
        return rng.random()

    assert first_draw(4, 2) == first_draw(4, 2)
    assert len({first_draw(4, 2), first_draw(4, 3), first_draw(5, 2), first_draw(0, 2)}) == 4


def test_qmc_is_scrambled_from_one_fixed_seed_so_its_sequence_goes_on_across_decisions():
    sampler = optuna_search._sampler({"sampler": "qmc", "seed": 7, "trials": 30}, 3)
    assert (sampler._seed, sampler._scramble) == (0, True)
