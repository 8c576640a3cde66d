"""Successive halving's rules (``halving``), without files: the rungs a section asks for,
every refusal of a bad section with its whole message, which points a full rung promotes
(sync), what ASHA promotes from a rung that is still filling, Hyperband's brackets, and that
a decided rung is never decided again."""
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptslurm.read import halving
from ptslurm.errors import SpecError, UsageError
from ptslurm.records.spec import Point

pytestmark = pytest.mark.fast

BASE = {"budget": "steps", "min": 2, "max": 18, "eta": 3, "metric": "loss"}


def search(**changes):
    return halving.parse({**BASE, **changes})


def test_rungs_are_min_times_powers_of_eta_and_values_carry_a_unit_when_asked():
    assert search().rungs == [2, 6, 18]
    assert search(min=0.5, max=4.5).rungs == [0.5, 1.5, 4.5]
    assert search(unit="iteration").value(6) == [6, "iteration"]
    assert search().value(6) == 6
    assert search().rung_of((18, "iteration")) == 2 and search().rung_of(7) is None


REFUSED = [
    ({"min": 2, "max": 20}, "halving: max must be min times a power of eta (2 * 3**k), got 20; e.g. max: 18 or 54"),
    ({"max": 2}, "halving: max (2) must be larger than min (2)"),
    ({"eta": 1}, "halving: eta must be a whole number of at least 2, got 1"),
    ({"min": -1}, "halving: min must be a positive number, got -1"),
    ({"promotion": "eager"}, "halving: promotion must be sync or async (ASHA), got 'eager'"),
    ({"brackets": 4}, "halving: brackets must be a whole number from 1 to 3 (the rungs), got 4"),
    ({"budget": ""}, "halving: budget must name a config key, e.g. steps or trainer.stop_trigger"),
    ({"rungs": 3}, "halving: unknown field 'rungs' (valid: budget, min, max, eta, metric, unit, promotion, brackets)"),
]


@pytest.mark.parametrize("changes,message", REFUSED)
def test_a_bad_section_is_refused_naming_the_field_and_the_fix(changes, message):
    with pytest.raises(SpecError) as err:
        search(**changes)
    assert err.value.message == message


def test_the_result_as_metric_needs_a_direction_as_collect_best_does():
    from ptslurm.plan import sweepfile

    with pytest.raises(UsageError, match="result:min or result:max"):
        sweepfile.parse({"grid": {"lr": [1, 2]}, "halving": {**BASE, "metric": "result"}})
    block = sweepfile.parse({"grid": {"lr": [1, 2]}, "halving": {**BASE, "metric": "result:max"}})
    assert block.search.metric == "result:max"


def test_the_grid_may_not_set_the_budget_key_itself():
    with pytest.raises(SpecError, match="the grid sets 'steps' \\(point 1\\)"):
        halving.first_budgets(search(), [Point(0, {"lr": 1}), Point(1, {"steps": 5})])
    out = halving.first_budgets(search(unit="iteration"), [Point(0, {"lr": 1})])
    assert out[0].updates == {"lr": 1, "steps": [2, "iteration"]}


def views(values, rung=0, ended=None, bracket=0):
    ended = ended if ended is not None else set(range(len(values)))
    return [halving.View(i, bracket, rung, i in ended, v if i in ended else None) for i, v in enumerate(values)]


def test_sync_promotes_the_best_third_of_a_full_rung_and_nothing_while_it_fills():
    values = [random.Random(i).random() for i in range(27)]
    full = halving.decide(search(), views(values), {}, {}, "min")
    best = sorted(range(27), key=lambda i: values[i])[:9]
    assert full == [halving.Promotion(0, 0, tuple(best))]
    assert halving.decide(search(), views(values, ended=set(range(26))), {}, {}, "min") == []
    # decided once: never again, even when asked again with the same files
    assert halving.decide(search(), views(values), {(0, 0): set(best)}, {}, "min") == []
    assert halving.decide(search(), views(values), {}, {}, "max")[0].points == tuple(
        sorted(range(27), key=lambda i: -values[i])[:9])


def test_failed_points_and_nan_never_rank_and_a_rung_of_failures_promotes_nobody():
    values = [float("nan"), None, 0.5, 0.1, None, 0.9]
    got = halving.decide(search(eta=2, min=1, max=4), views(values), {}, {}, "min")
    assert got == [halving.Promotion(0, 0, (3, 2, 5))]
    nobody = halving.decide(search(), views([None, None, None]), {}, {}, "min")
    assert nobody == [halving.Promotion(0, 0, ())]


def test_the_next_rung_is_decided_from_the_values_reached_there():
    s = search()
    vs = [halving.View(i, 0, 1 if i < 9 else 0, True, float(9 - i) if i < 9 else 5.0) for i in range(27)]
    got = halving.decide(s, vs, {(0, 0): set(range(9))}, {}, "min")
    assert got == [halving.Promotion(0, 1, (8, 7, 6))]


def test_asha_promotes_the_top_third_of_what_reached_the_rung_so_far_each_point_once():
    s = search(promotion="async")
    values = [0.9, 0.1, 0.5, 0.2, 0.8, 0.3] + [None] * 21
    first = halving.decide(s, views(values, ended=set(range(6))), {}, {}, "min")
    assert first == [halving.Promotion(0, 0, (1, 3))]  # 6 reached: the best 2
    # point 1 and 3 moved on (rung 1, running); three more reached rung 0
    later = [halving.View(i, 0, 1, False, None) if i in (1, 3) else
             halving.View(i, 0, 0, i < 9, [0.9, 0, 0.5, 0, 0.8, 0.3, 0.05, 0.7, 0.6][i] if i < 9 else None)
             for i in range(27)]
    got = halving.decide(s, later, {(0, 0): {1, 3}}, {(1, 0): 0.1, (3, 0): 0.2}, "min")
    assert got == [halving.Promotion(0, 0, (6,))]  # 9 reached: top 3 are 6, 1, 3; 1 and 3 went already


def test_hyperband_shares_the_points_among_brackets_in_its_proportions_each_starting_higher():
    s = search(brackets=3)
    assert halving.bracket_sizes(s, 27) == [14, 9, 4]
    brackets = halving.brackets_of(s, 27)
    assert sorted(brackets.count(b) for b in range(3)) == [4, 9, 14]
    points = halving.first_budgets(s, [Point(i, {}) for i in range(27)])
    assert [p.updates["steps"] for p in points] == [s.rungs[b] for b in brackets]
    with pytest.raises(SpecError, match="3 brackets need at least 3 points, the sweep has 2"):
        halving.brackets_of(s, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=60), st.integers(2, 5))
def test_a_full_rung_keeps_exactly_the_best_of_each_nth_and_at_least_one(values, eta):
    s = halving.parse({**BASE, "eta": eta, "min": 1, "max": eta})
    (got,) = halving.decide(s, views(values), {}, {}, "min")
    keep = max(1, len(values) // eta)
    assert len(got.points) == keep
    worst_kept = max(values[i] for i in got.points)
    assert all(values[i] >= worst_kept for i in range(len(values)) if i not in got.points)
    assert math.isfinite(worst_kept)


def test_the_halving_flag_is_the_sections_fields_and_wins_over_them():
    section = search()
    assert halving.from_flag("budget=steps,min=2,max=18,eta=3,metric=loss") == section
    assert halving.from_flag("promotion=async,brackets=2", section) == halving.parse(
        {**BASE, "promotion": "async", "brackets": 2})
    assert halving.from_flag("min=0.5,max=4.5", section).rungs == [0.5, 1.5, 4.5]
    with pytest.raises(SpecError) as err:
        halving.from_flag("budget steps")
    assert err.value.message.startswith("--halving 'budget steps': write FIELD=VALUE pairs separated by commas")
    with pytest.raises(SpecError, match="--halving: missing field 'min'"):
        halving.from_flag("budget=steps,max=18")


SECTION = {"budget": "steps", "min": 2, "max": 18, "eta": 3, "metric": "loss"}  # rungs 2, 6, 18


def test_where_the_search_left_each_point():
    """`status`'s rung column: promoted (recorded, or queued/running at a later rung than it
    started), stopped (its rung decided without it), waiting (for its rung's decision), final
    (the last rung), nothing for a failed point or one still at its first rung, no rung for a
    budget that is none of the rungs."""
    log = {"decisions": [{"bracket": 0, "rung": 0, "points": [0]}, "junk"]}
    points = [(2, "completed"), (2, "completed"), (6, "running"), (18, "completed"), (2, "failed"),
              (7, "completed"), (2, "running"), (6, "pending"), (6, "completed")]
    assert halving.standing(SECTION, log, points) == [
        (0, "promoted"), (0, "stopped"), (1, "promoted"), (2, "final"), (0, ""), (None, ""), (0, ""),
        (1, "promoted"), (1, "waiting")]
    assert halving.standing(SECTION, {"decisions": []}, points)[1] == (0, "waiting"), "no decision yet"
    asha = dict(SECTION, promotion="async")  # ASHA never stops a rung: a point left behind waits
    assert halving.standing(asha, log, points)[1] == (0, "waiting")
    for damaged in (None, "x", {"budget": "steps"}):
        assert halving.standing(damaged, log, points[:2]) == [(None, ""), (None, "")]
    assert halving.standing(SECTION, "not a log", points[:2]) == [(0, "waiting"), (0, "waiting")]


def test_where_the_search_left_each_point_in_brackets():
    """With brackets a point starts at its bracket's rung: running there is not a promotion,
    and a rung is stopped only by its own bracket's decision."""
    section = dict(SECTION, brackets=2)  # of 4 points, the second starts at rung 1
    log = {"decisions": [{"bracket": 1, "rung": 1, "points": []}]}
    points = [(2, "completed"), (6, "running"), (6, "running"), (6, "completed")]
    assert halving.standing(section, log, points) == [(0, "waiting"), (1, ""), (1, "promoted"), (1, "waiting")]
    assert halving.standing(section, log, [(2, "completed"), (6, "completed"), (6, "running"), (6, "completed")]
                            )[1] == (1, "stopped")
    assert halving.standing(section, log, points[:1]) == [(0, "waiting")], "fewer points than brackets"


def test_the_line_under_status_counts_each_rung():
    standings = [(0, "promoted"), (0, "stopped"), (0, "waiting"), (1, "promoted"), (2, "final"), (0, ""),
                 (None, ""), (0, ""), (1, "promoted")]
    assert halving.summary(SECTION, standings) == (
        "successive halving (eta 3, by loss): rung 0 (steps=2): 8, 4 on; rung 1 (steps=6): 3, 3 on; "
        "rung 2 (steps=18): 1; 1 waiting for a decision")
    asha = dict(SECTION, promotion="async", brackets=2, metric="acc", eta=3)
    assert halving.summary(asha, [(0, ""), (1, "final")]) == (
        "ASHA (eta 3, 2 brackets, by acc): rung 0 (steps=2): 2, 1 on; rung 1 (steps=6): 1, 0 on; rung 2 (steps=18): 0")
    assert halving.summary(None, standings) == "" and halving.summary({"eta": 3}, standings) == ""


def test_a_search_section_takes_its_defaults_and_names_each_fault():
    search = halving.parse({"budget": "steps", "min": 2, "max": 18}, "halving")
    assert (search.eta, search.metric, search.brackets, search.promotion, search.unit) == (3, "loss", 1, "sync", None)
    faults = [
        ("a list", "halving: expected a mapping like {budget: steps, min: 2, max: 18, eta: 3, metric: loss}"),
        ({"budget": "steps", "min": 2, "max": 0}, "max"),
        ({"budget": "steps", "min": 0, "max": 18}, "min"),
        ({"budget": "steps", "min": True, "max": 18}, "min"),
        ({"budget": "steps", "min": 2, "max": 18, "eta": True}, "eta"),
        ({"budget": "steps", "min": 2, "max": 5}, "got 5; e.g. max: 6 or 18"),
        ({"budget": "steps", "min": 2, "max": 20}, "got 20; e.g. max: 18 or 54"),
        ({"budget": "steps", "min": 2, "max": 18, "brackets": True}, "brackets"),
        ({"budget": "steps", "min": 2, "max": 18, "metric": ""}, "metric must name a sacred metric"),
        ({"budget": "steps", "min": 2, "max": 18, "unit": 5}, "unit must be a word like iteration or epoch, got 5"),
    ]
    for data, words in faults:
        with pytest.raises(SpecError) as raised:
            halving.parse(data, "halving")
        assert words in str(raised.value) and str(raised.value).startswith("halving: "), (data, str(raised.value))


@pytest.mark.parametrize("brackets, low, high, eta, n, sizes", [
    (3, 2, 18, 3, 12, [6, 4, 2]),  # Hyperband's weights 9:6:3 -> a half, a third, a sixth
    (3, 2, 18, 3, 7, [4, 2, 1]),  # 3.5, 2.33, 1.17: the largest remainder gets the last point
    (3, 2, 18, 3, 3, [1, 1, 1]),  # as many points as brackets: one each
    (3, 1, 256, 4, 4, [2, 1, 1]),  # 3.05, 0.76, 0.19: one each at least, taken from the largest
    (2, 2, 18, 3, 4, [3, 1]),
])
def test_brackets_share_the_points_as_hyperband_weighs_them(brackets, low, high, eta, n, sizes):
    from collections import Counter

    search = halving.parse({"budget": "steps", "min": low, "max": high, "eta": eta, "brackets": brackets}, "h")
    assert halving.bracket_sizes(search, n) == sizes
    assert Counter(halving.brackets_of(search, n)) == dict(enumerate(sizes))


def test_more_brackets_than_points_is_refused():
    search = halving.parse({"budget": "steps", "min": 2, "max": 18, "brackets": 3}, "h")
    with pytest.raises(SpecError, match="3 brackets need at least 3 points, the sweep has 2"):
        halving.bracket_sizes(search, 2)
