"""`collect --where` and ranking (``read.results``) on a sweep's real files, in-process: a
condition compares numbers as numbers and anything else as the text collect prints, all
conditions must hold, a bad one is refused naming the columns; a ranking against the stored
best's direction reads each point's series from its files; ties and unknown metrics are said."""
import json
import sys
from pathlib import Path

import pytest

from ptslurm.errors import UsageError
from ptslurm.read import results

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
from bench_collect import make_sweep  # noqa: E402

pytestmark = pytest.mark.fast


@pytest.fixture
def records(tmp_path):
    """4 completed points: lr 0.1, 0.01, 0.001, 0.0001; point i's loss falls 1/(1+i), 1/(2+i),
    1/(3+i) (so its stored best, the lowest, is 1/(3+i)), its result 1/(1+i)."""
    return results.collect([make_sweep(tmp_path, 4, 3)])


def indices(rows):
    return [r["index"] for r in rows]


@pytest.mark.parametrize("conditions, chosen", [
    (["lr=1e-2"], [1]),  # a number as a number: 1e-2 is 0.01
    (["lr=0.010"], [1]),
    (["lr = 0.001"], [2]),
    (["state=completed"], [0, 1, 2, 3]),
    (["state=completed", "lr=0.1"], [0]),  # all must hold
    (["state=failed"], []),
    (["lr=fast"], []),  # no number matches a word
    (["sweep=synthetic", "index=3"], [3]),
    (["seed=null"], [0, 1, 2, 3]),  # None as collect --json prints it
    (["seed=None"], [0, 1, 2, 3]),
])
def test_where_keeps_the_rows_whose_columns_equal_every_condition(records, conditions, chosen):
    assert indices(results.where(records, conditions)) == chosen


def test_where_compares_lists_and_booleans_as_collect_prints_them(records):
    rows = [dict(records[0], tags=["a", 1], done=True), dict(records[1], tags=["b"], done=False)]
    assert indices(results.where(rows, ['tags=["a", 1]'])) == [0]
    assert indices(results.where(rows, ["done=true"])) == [0] and indices(results.where(rows, ["done=false"])) == [1]
    assert indices(results.where(rows, ["done=True"])) == [0], "Python's spelling too"


@pytest.mark.parametrize("condition, message", [
    ("lr", "--where 'lr': expected KEY=VALUE, e.g. --where state=completed"),
    ("=3", "--where '=3': expected KEY=VALUE, e.g. --where state=completed"),
    ("speed=3", "--where 'speed' is no column; columns: sweep, index, lr, seed, state, result, accuracy/final"),
])
def test_a_bad_condition_is_refused_naming_the_columns(records, condition, message):
    with pytest.raises(UsageError) as err:
        results.where(records, [condition])
    assert str(err.value).startswith(message)


def test_the_stored_best_ranks_in_its_own_direction(records):
    ranking = results.rank(records, "loss")
    assert indices(ranking.records) == [3, 2, 1, 0] and ranking.key == "loss/best" and ranking.way == "min"
    assert ranking.note().startswith("ranked by loss/best, lowest first (") and "tie" not in ranking.note()
    assert ranking.ties == [], "one best point is no tie"


def test_ranking_the_other_way_reads_each_points_series_from_its_files(records, tmp_path):
    """loss:max: the stored best is each point's lowest loss; the highest comes from the files."""
    ranking = results.rank(records, "loss:max")
    assert indices(ranking.records) == [0, 1, 2, 3] and ranking.way == "max"
    assert [results._series_best(r, "loss", "max") for r in ranking.records] == [1.0, 1 / 2, 1 / 3, 1 / 4]
    gone = Path(records[0]["storage_dir"]) / "ptslurm_status.json"
    gone.unlink()  # a point whose files say nothing ranks last
    assert indices(results.rank(records, "loss:max").records) == [1, 2, 3, 0]
    assert results._series_best({"index": 9}, "loss", "max") is None


def test_result_ranks_by_the_runs_result_and_ties_are_said(records):
    assert indices(results.rank(records, "result:max").records) == [0, 1, 2, 3]
    tied = [dict(r, result=0.5) for r in records[:2]] + records[2:]
    ranking = results.rank(tied, "result:max")
    assert ranking.ties == [0, 1]
    assert ranking.note().endswith("; tie: points 0, 1 share the best value, the first is shown")


def test_an_unknown_metric_is_refused_with_the_reported_ones(records):
    with pytest.raises(UsageError, match=r"unknown metric 'acc'; reported metrics: .*accuracy.*loss.* \(or 'result'\)"):
        results.rank(records, "acc")
    with pytest.raises(UsageError, match=r"unknown metric 'state'"):
        results.rank(records, "state")


def test_a_nan_never_wins_and_a_higher_rung_ranks_first(records):
    rows = [dict(records[0], **{"loss/best": float("nan")}), *records[1:]]
    assert indices(results.rank(rows, "loss").records)[-1] == 0
    rows = [dict(r, rung=1 if r["index"] == 0 else 0) for r in records]
    ranking = results.rank(rows, "loss")
    assert indices(ranking.records)[0] == 0 and ranking.note().startswith("successive halving: the highest rung")
    assert json.dumps(indices(ranking.records)) == "[0, 3, 2, 1]"
