"""Sweep files against seml's own config cases (issue 16): the shapes of seml 0.5.7's test
resources, rewritten here with other keys and values, and the point sets seml's generator
gives for them (facts noted in ../shared/reference/seml-config-cases/README.md). Each case
gives the same set of points, or a refusal that names the ptslurm form."""
import random
import textwrap

import pytest

from ptslurm.plan import grid, sweepfile
from ptslurm.errors import SpecError

pytestmark = pytest.mark.fast


def points(tmp_path, text, cli=()):
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return grid.expand(sweepfile.load(path), grid.parse_with(list(cli)))


def as_set(ps):
    return {tuple(sorted((k, repr(v)) for k, v in p.updates.items())) for p in ps}


def refused(tmp_path, text, *needles):
    with pytest.raises(SpecError) as err:
        points(tmp_path, text)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_plain_grid_with_a_command_line_override(tmp_path):
    ps = points(tmp_path, """
        grid:
          corpus: {type: choice, options: [wiki, books]}
          lr: {type: choice, options: [0.1, 0.01]}
    """, cli=["corpus=tiny"])
    assert as_set(ps) == as_set([grid.Point(0, {"corpus": "tiny", "lr": lr}) for lr in (0.1, 0.01)])


def test_every_sub_config_inherits_fixed_grid_and_random_and_adds_its_own(tmp_path):
    ps = points(tmp_path, """
        fixed: {p: 1, q: 2}
        grid:
          r: {type: choice, options: [10, 20]}
        random:
          samples: 3
          seed: 5
          s: {type: uniform, min: 4, max: 4}
        first:
          fixed: {p: 7, q: 8}
          grid:
            r: {type: choice, options: [30, 40]}
          random:
            samples: 5
            seed: 6
            t: {type: uniform, min: 9, max: 9}
        second:
          grid:
            u: {type: choice, options: [50, 60]}
    """)
    first = [{"p": 7, "q": 8, "r": r, "s": 4.0, "t": 9.0} for r in (30, 40)]
    second = [{"p": 1, "q": 2, "r": r, "u": u, "s": 4.0} for r in (10, 20) for u in (50, 60)]
    assert as_set(ps) == as_set([grid.Point(0, u) for u in first + second])
    assert len(ps) == 6, "seml: 6 unique points (the repeated samples of constant draws collapse)"


def test_zip_id_groups_step_together_keep_their_place_and_uniform_with_num_is_linspace(tmp_path):
    ps = points(tmp_path, """
        grid:
          depth: {type: choice, options: [1, 2], zip_id: g}
          lr: {type: uniform, min: 0.0, max: 1, num: 2, zip_id: g}
          flag: {type: choice, options: [true, false]}
    """)
    assert [p.updates for p in ps] == [{"depth": 1, "lr": 0.0, "flag": True}, {"depth": 1, "lr": 0.0, "flag": False},
                                       {"depth": 2, "lr": 1.0, "flag": True}, {"depth": 2, "lr": 1.0, "flag": False}]


def test_seml_named_config_keys_are_refused_naming_the_ptslurm_form(tmp_path):
    refused(tmp_path, """
        fixed:
          +encoder: {name: small}
    """, "'+encoder' is seml's way to select a named config", "named_configs: [NAME]")


@pytest.mark.parametrize("text, needles", [
    ("fixed: {alpha: x}\ngrid:\n  alpha: {type: choice, options: [1, 2]}\n", ("'alpha' is given twice", "fixed", "grid")),
    ("fixed:\n  alpha: {beta.gamma: 3}\ngrid:\n  alpha:\n    type: parameter_collection\n    params:\n"
     "      beta:\n        type: parameter_collection\n        params:\n"
     "          gamma: {type: choice, options: [1, 2]}\n", ("'alpha.beta.gamma' is given twice",)),
    ("grid:\n  alpha: [1, 2]\n  alpha: [3]\n", ("duplicate key 'alpha' (lines 2 and 3)",)),
    ("grid:\n  m: {beta: [1, 2]}\n  m.beta: [3]\n", ("'m.beta' is given twice",)),
])
def test_a_key_given_twice_is_an_error_naming_both_places(tmp_path, text, needles):
    refused(tmp_path, text, *needles)


def test_seed_and_samples_as_config_keys_and_a_parameters_own_seed(tmp_path):
    ps = points(tmp_path, """
        fixed: {seed: 11, samples: 12}
        random:
          seed: 13
          samples: 5
          w: {type: uniform, min: 0, max: 1, seed: 14}
    """)
    rng = random.Random(14)
    assert [p.updates for p in ps] == [{"seed": 11, "samples": 12, "w": rng.uniform(0, 1)} for _ in range(5)]


def test_a_choice_of_dicts_inside_parameter_collections(tmp_path):
    ps = points(tmp_path, """
        grid:
          outer:
            type: parameter_collection
            params:
              opt:
                type: choice
                options: [{kind: sgd, m: 0.9}, {kind: adam, m: 0.0}]
        random:
          samples: 3
          seed: 2
          outer:
            type: parameter_collection
            params:
              drop: {type: uniform, min: 0.0, max: 0.5}
    """)
    assert len(ps) == 6 and {p.updates["outer.opt"]["kind"] for p in ps} == {"sgd", "adam"}
    assert all(0.0 <= p.updates["outer.drop"] <= 0.5 for p in ps)


@pytest.mark.parametrize("text, needles", [
    ("random:\n  samples: 2\n  w: {type: uniform, min: 0, mx: 1}\n", ("unknown field 'mx'",)),
    ("slurm:\n  sbatch_options: {mem: 4G}\ngrid:\n  a: [1]\n", ("'slurm' section is seml's", "profile")),
    ("seml:\n  executable: x.py\ngrid:\n  a: [1]\n", ("'seml' section is seml's",)),
    ("grid:\n  a: [1]\nextra: 3\n", ("unknown section 'extra'", "subgrids")),
])
def test_seml_forms_ptslurm_does_not_take_are_refused_naming_the_fix(tmp_path, text, needles):
    refused(tmp_path, text, *needles)
