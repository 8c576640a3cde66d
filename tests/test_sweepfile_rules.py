"""Sweep files, rule by rule: every refusal with its whole message (a user reads it, and a
changed word is a changed contract), the values each axis type makes, the samplers' draws and
seeds, and the alias bomb measured without being expanded."""
import math
import random

import pytest

from ptslurm.plan import grid, sweepfile
from ptslurm.errors import SpecError

pytestmark = pytest.mark.fast


def load(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return sweepfile.load(path)


REFUSED = [
    ('fixed: 3\n',
     'fixed: expected a mapping of config keys, got int'),
    ('grid: [1, 2]\n',
     'grid: expected a mapping of config keys, got list'),
    ('grid: {lr: 0.1}\n',
     "grid.lr: expected a list of values or {type: ...}, got 0.1; put single values under 'fixed:'"),
    ('grid: {lr: []}\n',
     'grid.lr: empty axis; give at least one value'),
    ('grid: {lr: {type: range, min: 0, max: 1}}\n',
     "grid.lr: type 'range' needs 'step'"),
    ('grid: {lr: {type: range, min: 0, max: 1, step: x}}\n',
     "grid.lr: 'step' must be a number, got 'x'"),
    ('grid: {lr: {type: range, min: 0, max: .inf, step: 1}}\n',
     "grid.lr: 'max' must be a finite number, got inf"),
    ('grid: {lr: {type: range, min: 0, max: 10000000, step: 1}}\n',
     'grid.lr: the range has 10,000,000 values, more than 1,000,000; use a larger step'),
    ('grid: {lr: {type: range, min: 0, max: 1, step: true}}\n',
     "grid.lr: 'step' must be a number, got True"),
    ('grid: {lr: {type: linspace, min: 0, max: 1, num: 2000000}}\n',
     'grid.lr: num 2,000,000 is more than 1,000,000 values'),
    ('grid: {lr: {type: linspace, min: 0, max: 1, num: 3, extra: 1}}\n',
     "grid.lr: unknown field 'extra' (valid: max, min, num, options, step, type, zip_id)"),
    ('grid: {lr: {type: gauss, min: 0}}\n',
     "grid.lr: unknown type 'gauss' (valid: choice, range, linspace, logspace)"),
    ('grid: {lr: {type: choice, options: 3}}\n',
     "grid.lr: 'options' must be a list"),
    ('grid: {lr: {type: choice}}\n',
     "grid.lr: type 'choice' needs 'options'"),
    ('grid: {a: {type: choice, options: [1, 2], zip_id: g}, b: {type: choice, options: [1], zip_id: g}}\n',
     "zip_id 'g': coupled axes must have the same length (a has 2, b has 1)"),
    ('grid: {+small: [1]}\n',
     "grid: '+small' is seml's way to select a named config; ptslurm writes it as named_configs: [NAME] (an axis: named_configs: [[NAME1, NAME2]])"),
    ("grid: {'a b': [1]}\n",
     "grid: 'a b' is not a config key; use dotted names like trainer.optimizer.lr"),
    ('grid: {lr: [1, 2]}\nfixed: {lr: 3}\n',
     "'lr' is given twice, in fixed and in grid; give it once"),
    ('grid: {lr: [1, 2]}\nrandom: {samples: 2, lr: {type: uniform, min: 0, max: 1}}\n',
     "'lr' is given twice, in grid and in random; give it once"),
    ('grid: {trainer.lr: [1, 2], trainer: {lr: [3]}}\n',
     "'trainer.lr' is given twice, in grid and in grid; give it once"),
    ('grid: {x: {type: parameter_collection, params: 3}}\n',
     "grid: x: a parameter_collection needs only 'params' (a mapping)"),
    ('grid: {x: {type: parameter_collection, params: {a: [1]}, more: 1}}\n',
     "grid: x: a parameter_collection needs only 'params' (a mapping)"),
    ('zip: {a: [1]}\n',
     'zip: expected a list of mappings like - {warmup: [100, 1000], decay: [0.9, 0.99]}'),
    ('zip:\n  - {}\n',
     'zip[0]: empty group; give two or more keys with lists of equal length'),
    ('zip:\n  - {a: [1, 2], b: [1]}\n',
     'zip[0]: coupled axes must have the same length (a has 2, b has 1)'),
    ('named_configs: small\n',
     'named_configs: expected a list such as [base, [small, large]]'),
    ('named_configs: [[]]\n',
     'named_configs: empty named-config axis'),
    ("named_configs: ['bad name']\n",
     "named_configs: 'bad name' is neither KEY=VALUE nor a named config; quote updates whole, e.g. 'lr=[1e-3,1e-4]'"),
    ('subgrids: [1]\n',
     'subgrids: expected a mapping of name -> sub-grid'),
    ('subgrids: {a: 3}\n',
     'subgrids.a: expected a mapping with sections fixed, grid, zip, random, named_configs, subgrids, resources, halving, optuna, got int'),
    ('random: 3\n',
     "random: expected a mapping with 'samples', 'seed' and parameters"),
    ('random: {samples: 2}\n',
     'random: no parameters to sample; add e.g. lr: {type: loguniform, min: 1e-5, max: 1e-2}'),
    ('random: {samples: true, lr: {type: uniform, min: 0, max: 1}}\n',
     "random: 'samples' must be a positive integer, got True"),
    ('random: {samples: 2000000, lr: {type: uniform, min: 0, max: 1}}\n',
     'random: 2,000,000 samples are more than 1,000,000'),
    ('random: {samples: 2, seed: x, lr: {type: uniform, min: 0, max: 1}}\n',
     "random: 'seed' must be an integer, got 'x'"),
    ('random: {samples: 2, lr: 3}\n',
     'random.lr: expected {type: uniform|loguniform|choice|randint, ...}'),
    ('random: {samples: 2, lr: {type: uniform, min: 0}}\n',
     "random.lr: type 'uniform' needs 'max'"),
    ('random: {samples: 2, lr: {type: uniform, min: 0, max: 1, step: 3}}\n',
     "random.lr: unknown field 'step' (valid: max, min, options, seed, type)"),
    ('random: {samples: 2, lr: {type: uniform, min: 0, max: 1, seed: x}}\n',
     "random.lr: 'seed' must be an integer, got 'x'"),
    ('random: {samples: 2, lr: {type: loguniform, min: 0, max: 1}}\n',
     'random.lr: loguniform needs min and max > 0'),
    ('random: {samples: 2, lr: {type: randint, min: 3, max: 3}}\n',
     'random.lr: randint needs max > min (max is excluded)'),
    ('random: {samples: 2, lr: {type: choice, options: []}}\n',
     "random.lr: 'options' must be a non-empty list"),
    ('random: {samples: 2, lr: {type: beta}}\n',
     "random.lr: unknown type 'beta' (valid: uniform, loguniform, choice, randint)"),
    ('seml: {executable: x}\n',
     "the 'seml' section is seml's; ptslurm takes the experiment file and its options on the command line"),
    ('slurm: {sbatch_options: {}}\n',
     "the 'slurm' section is seml's; in ptslurm these are a profile's resources (ptslurm init) or command-line options"),
    ('grd: {a: [1]}\n',
     "unknown section 'grd' (valid: fixed, grid, zip, random, named_configs, subgrids, resources, halving, optuna; put sub-grids under 'subgrids:')"),
    ('grid: {a: [1], a: [2]}\n',
     "duplicate key 'a' (lines 1 and 1): YAML keeps only the last; give it once"),
    ('grid: {a: [1, 2\n',
     "not valid YAML (line 2, column 1): expected ',' or ']', but got '<stream end>'"),
    ('x: &a [1, 2]\ny: *a\n',
     "unknown section 'x' (valid: fixed, grid, zip, random, named_configs, subgrids, resources, halving, optuna; put sub-grids under 'subgrids:')"),
    ('',
     'the file is empty; give at least one of: fixed, grid, zip, random, named_configs, subgrids, resources, halving, optuna'),
    ('3\n',
     'expected a mapping with sections fixed, grid, zip, random, named_configs, subgrids, resources, halving, optuna, got int'),
    ('subgrids: {a: {random: {lr: {type: uniform, min: 0, max: 1}}}}\nrandom: {samples: x, lr: {type: uniform, min: 0, max: 1}}\n',
     "random: 'samples' must be a positive integer, got 'x'"),
]


@pytest.mark.parametrize("text, message", REFUSED)
def test_a_bad_sweep_file_is_refused_with_its_message(tmp_path, text, message):
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    assert str(caught.value) == f"sweep.yaml: {message}"


def values_of(tmp_path, spec: str) -> list:
    block = load(tmp_path, f"grid: {{x: {spec}}}\n")
    return [p.updates["x"] for p in grid.expand(block)]


@pytest.mark.parametrize("spec, expected", [
    ("[3, a, 1.5]", [3, "a", 1.5]),
    ("{type: choice, options: [b, 2]}", ["b", 2]),
    ("{type: range, min: 2, max: 8, step: 2}", [2, 4, 6]),
    ("{type: range, min: 2, max: 9, step: 2}", [2, 4, 6, 8]),
    ("{type: range, min: 0, max: 1, step: 0.25}", [0.0, 0.25, 0.5, 0.75]),
    ("{type: range, min: 5, max: 1, step: -2}", [5, 3]),
    ("{type: range, min: 1, max: 2, step: 5}", [1]),
    ("{type: linspace, min: 0, max: 1, num: 5}", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("{type: linspace, min: 32, max: 128, num: 4}", [32.0, 64.0, 96.0, 128.0]),
    ("{type: linspace, min: 7, max: 9, num: 1}", [7.0]),
    ("{type: linspace, min: 0, max: 1, num: 2}", [0.0, 1.0]),
    ("{type: logspace, min: 1e-4, max: 1e-2, num: 3}", [1e-4, 1e-3, 1e-2]),
    ("{type: uniform, min: 0, max: 1, num: 3}", [0.0, 0.5, 1.0]),  # seml's grid spelling
    ("{type: loguniform, min: 1, max: 100, num: 3}", [1.0, 10.0, 100.0]),
])
def test_the_values_of_each_axis_type(tmp_path, spec, expected):
    got = values_of(tmp_path, spec)
    assert got == expected and [type(v) for v in got] == [type(v) for v in expected], got


@pytest.mark.parametrize("spec, message", [
    ("{type: range, min: 1, max: 5, step: 0}", "range from 1 to 5 with step 0 is empty; step must move from min "
                                               "towards max"),
    ("{type: range, min: 5, max: 1, step: 1}", "range from 5 to 1 with step 1 is empty; step must move from min "
                                               "towards max"),
    ("{type: linspace, min: 0, max: 1, num: 0}", "num must be a positive integer, got 0"),
    ("{type: linspace, min: 0, max: 1, num: 2.5}", "num must be a positive integer, got 2.5"),
    ("{type: logspace, min: 0, max: 1, num: 3}", "logspace needs min and max > 0, got 0 and 1"),
])
def test_empty_or_impossible_axes_are_refused(tmp_path, spec, message):
    with pytest.raises(SpecError) as caught:
        load(tmp_path, f"grid: {{x: {spec}}}\n")
    assert str(caught.value) == f"sweep.yaml: grid.x: {message}"


def draws(tmp_path, text: str) -> list:
    return [p.updates for p in grid.expand(load(tmp_path, text))]


def test_random_draws_follow_the_seed_and_each_sampler(tmp_path):
    text = ("random: {samples: 3, seed: 5, a: {type: uniform, min: 1, max: 2}, b: {type: loguniform, min: 1e-4, "
            "max: 1e-1}, c: {type: randint, min: 3, max: 6}, d: {type: choice, options: [x, y, z]}}\n")
    got = draws(tmp_path, text)
    rng = random.Random(5)
    expected = []
    for _ in range(3):
        a = rng.uniform(1, 2)
        b = math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))
        c = rng.randrange(3, 6)
        d = rng.choice(["x", "y", "z"])
        expected.append({"a": a, "b": b, "c": c, "d": d})
    assert got == expected
    assert draws(tmp_path, text.replace("seed: 5", "seed: 6")) != got
    unseeded = text.replace("seed: 5, ", "")
    assert draws(tmp_path, unseeded) == draws(tmp_path, text.replace("seed: 5", "seed: 0"))


def test_a_parameter_with_its_own_seed_keeps_its_values_when_others_are_added(tmp_path):
    one = draws(tmp_path, "random: {samples: 4, seed: 1, lr: {type: uniform, min: 0, max: 1, seed: 9}}\n")
    two = draws(tmp_path, "random: {samples: 4, seed: 1, a: {type: uniform, min: 0, max: 1}, "
                          "lr: {type: uniform, min: 0, max: 1, seed: 9}}\n")
    own = random.Random(9)
    assert [d["lr"] for d in one] == [d["lr"] for d in two] == [own.uniform(0, 1) for _ in range(4)]
    shared = random.Random(1)
    assert [d["a"] for d in two] == [shared.uniform(0, 1) for _ in range(4)]


def test_a_subgrids_random_block_takes_the_parents_samples_and_seed(tmp_path):
    got = draws(tmp_path, "random: {samples: 2, seed: 3, a: {type: uniform, min: 0, max: 1}}\n"
                          "subgrids: {s: {random: {b: {type: uniform, min: 5, max: 6}}}}\n")
    assert len(got) == 2 and all(5 <= d["b"] <= 6 for d in got)
    with pytest.raises(SpecError) as caught:
        grid.expand(load(tmp_path, "subgrids: {s: {random: {b: {type: uniform, min: 5, max: 6}}}}\n"))
    assert "'samples' is missing" in str(caught.value)


def test_nested_mappings_are_dotted_keys_and_fixed_keeps_mappings_whole(tmp_path):
    (p,) = grid.expand(load(tmp_path, "fixed: {trainer: {model: {layers: {a: 1}}}, opt: {}}\n"
                                      "grid: {trainer: {lr: [0.1]}}\n"))
    assert p.updates == {"trainer.model.layers.a": 1, "opt": {}, "trainer.lr": 0.1}
    (q,) = grid.expand(load(tmp_path, "grid: {x: {type: parameter_collection, params: {y: [2]}}}\n"))
    assert q.updates == {"x.y": 2}


def test_an_alias_bomb_is_measured_not_expanded(tmp_path):
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    text = "fixed:\n" + "\n".join("  " + ln for ln in lines) + "\n"
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    assert str(caught.value) == ("sweep.yaml: the file expands to more than 1,000,000 values (YAML aliases nested "
                                 "in aliases?); write the values out, or use a range")
    small = "fixed:\n  a: &a [1, 2]\n  b: *a\n"
    (p,) = grid.expand(load(tmp_path, small))
    assert p.updates == {"a": [1, 2], "b": [1, 2]}
    assert sweepfile._expanded_size({"a": [1, [2, 3]], "b": 4}, {}) == 7  # each container counts itself


def test_a_missing_file_and_yaml_1_2_floats(tmp_path):
    with pytest.raises(SpecError) as caught:
        sweepfile.load(tmp_path / "none.yaml")
    assert str(caught.value) == f"cannot read sweep file {str(tmp_path / 'none.yaml')!r}: No such file or directory"
    (p,) = grid.expand(load(tmp_path, "fixed: {a: 1e-3, b: -2E+2, c: .5, d: 1.0, e: 7, f: '1e-3', g: .inf}\n"))
    assert p.updates == {"a": 1e-3, "b": -200.0, "c": 0.5, "d": 1.0, "e": 7, "f": "1e-3", "g": float("inf")}
    assert [type(v) for v in p.updates.values()] == [float, float, float, float, int, str, float]


@pytest.mark.parametrize("text, message", [
    # found by the mutation run: these were a traceback, a wrong section, and a lost reason
    ("fixed: {a: &x [1, *x]}\n", "a YAML alias refers to the value it is part of (&name ... *name inside it); "
                                 "write the values out"),
    ("subgrids: {a: {fixed: {lr: 1}, grid: {lr: [1, 2]}}}\n",
     "subgrids.a: 'lr' is given twice, in fixed and in grid; give it once"),
    ("subgrids: {a: {fixed: {lr: 1}, zip: [{lr: [1, 2], b: [3, 4]}]}}\n",
     "subgrids.a: 'lr' is given twice, in fixed and in zip; give it once"),
    ("fixed: {a: 1}\n\x00\n", "not valid YAML (character 15): special characters are not allowed"),
    # messages that name nested places
    ("zip:\n  - {'a b': [1]}\n", "zip[0]: 'a b' is not a config key; use dotted names like trainer.optimizer.lr"),
    ("zip:\n  - {a: 3}\n", "zip[0].a: expected a list of values or {type: ...}, got 3; put single values under 'fixed:'"),
    ("fixed: {a: 1}\nzip:\n  - {a: [1, 2], b: [3, 4]}\n", "'a' is given twice, in fixed and in zip; give it once"),
    ("grid: {trainer: {'a b': [1]}}\n", "grid: 'trainer.a b' is not a config key; use dotted names like "
                                        "trainer.optimizer.lr"),
    ("fixed: {trainer: {'a b': 1}}\n", "fixed: 'trainer.a b' is not a config key; use dotted names like "
                                       "trainer.optimizer.lr"),
    ("grid: {x: {type: range, min: 3, max: 3, step: 1}}\n", "grid.x: empty axis; give at least one value"),
    ("grid: {x: {type: range, min: 0}}\n", "grid.x: type 'range' needs 'max', 'step'"),
    ("grid: {x: {type: logspace, min: 1, max: 0, num: 2}}\n", "grid.x: logspace needs min and max > 0, got 1 and 0"),
    ("grid: {x: {type: range, min: 0, max: 600000, step: 0.5}}\n",
     "grid.x: the range has 1,200,000 values, more than 1,000,000; use a larger step"),
    ("grid: {x: {type: range, min: -600000, max: 500000, step: 1}}\n",
     "grid.x: the range has 1,100,000 values, more than 1,000,000; use a larger step"),
    ("random: {lr: {type: uniform, min: 0, max: 1}}\n", "random: 'samples' must be a positive integer, got None"),
    ("random: {samples: 2, a: {type: randint, min: 0}}\n", "random.a: type 'randint' needs 'max'"),
    ("random: {samples: 2, a: {type: loguniform, max: 1}}\n", "random.a: type 'loguniform' needs 'min'"),
    ("random: {samples: 2, a: {type: loguniform, min: 1, max: 0}}\n", "random.a: loguniform needs min and max > 0"),
    ("random: {samples: 2, a: {type: choice}}\n", "random.a: type 'choice' needs 'options'"),
    ("named_configs: ['a=b.json']\n", "named_configs: 'a=b.json' is neither KEY=VALUE nor a named config; quote "
                                      "updates whole, e.g. 'lr=[1e-3,1e-4]'"),
])
def test_more_refusals_with_their_messages(tmp_path, text, message):
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    assert str(caught.value) == f"sweep.yaml: {message}"


def test_a_million_values_is_the_limit_and_then_max_points_applies(tmp_path):
    block = load(tmp_path, "grid: {x: {type: range, min: 0, max: 1000000, step: 1}}\n")
    with pytest.raises(SpecError) as caught:
        grid.expand(block)
    assert str(caught.value) == ("the sweep has 1,000,000 points, more than --max-points 10,000; narrow the grid, "
                                 "or raise --max-points if you mean it")
    one = load(tmp_path, "random: {samples: 1, a: {type: uniform, min: 0, max: 1}}\n")
    assert len(grid.expand(one)) == 1


def test_named_config_axes_zip_groups_in_place_and_nested_zips(tmp_path):
    points = grid.expand(load(tmp_path, "named_configs: [base, [small, large]]\n"))
    assert [p.named_configs for p in points] == [("base", "small"), ("base", "large")]
    points = grid.expand(load(tmp_path, "grid:\n  a: {type: choice, options: [1, 2], zip_id: g}\n  c: [7, 8]\n"
                                        "  b: {type: choice, options: [3, 4], zip_id: g}\n"))
    assert [(p.updates["a"], p.updates["b"], p.updates["c"]) for p in points] == [(1, 3, 7), (1, 3, 8), (2, 4, 7),
                                                                                  (2, 4, 8)]
    points = grid.expand(load(tmp_path, "zip:\n  - {trainer: {lr: [1, 2]}, b: [3, 4]}\n"))
    assert [p.updates for p in points] == [{"trainer.lr": 1, "b": 3}, {"trainer.lr": 2, "b": 4}]
    points = grid.expand(load(tmp_path, "grid: {x: {type: parameter_collection, params: {y: [2]}}, z: [3, 4]}\n"))
    assert [p.updates for p in points] == [{"x.y": 2, "z": 3}, {"x.y": 2, "z": 4}]
    points = grid.expand(load(tmp_path, "named_configs: [configs/base.yaml, my-config.json]\n"))
    assert points[0].named_configs == ("configs/base.yaml", "my-config.json")


def test_a_subgrids_random_block_merges_with_its_parents(tmp_path):
    got = draws(tmp_path, "random: {samples: 2, seed: 3, a: {type: uniform, min: 0, max: 1}, "
                          "b: {type: uniform, min: 0, max: 1}}\n"
                          "subgrids: {s: {fixed: {a: 7}, random: {seed: 9, c: {type: uniform, min: 5, max: 6}}}}\n")
    rng = random.Random(9)  # the sub-grid's seed; the parent's b kept, its a fixed by the sub-grid
    expected = []
    for _ in range(2):
        b = rng.uniform(0, 1)
        c = rng.uniform(5, 6)
        expected.append({"a": 7, "b": b, "c": c})
    assert got == expected
    with pytest.raises(SpecError) as caught:
        grid.expand(load(tmp_path, "subgrids: {s: {random: {b: {type: uniform, min: 5, max: 6}}}}\n"))
    assert str(caught.value) == ("sweep.yaml: subgrids.s: random: 'samples' is missing (give it here or in the "
                                 "parent's random block)")
    unseeded = draws(tmp_path, "random: {samples: 2, a: {type: uniform, min: 0, max: 1}}\n")
    zero = random.Random(0)
    assert [d["a"] for d in unseeded] == [zero.uniform(0, 1) for _ in range(2)]
