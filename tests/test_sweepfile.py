"""YAML sweep files: every section, and a one-line error naming the key for bad ones."""
import pytest

from ptslurm.plan import grid, sweepfile
from ptslurm.errors import SpecError

pytestmark = pytest.mark.fast


def load(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return sweepfile.load(path)


def test_all_sections(tmp_path):
    block = load(tmp_path, """
fixed: {trainer: {epochs: 3}}
grid:
  batch_size: [16, 32]
  lr: {type: logspace, min: 1e-4, max: 1e-2, num: 3}
zip:
  - {warmup: [100, 1000], decay: [0.9, 0.99]}
random: {samples: 2, seed: 7, dropout: {type: uniform, min: 0.0, max: 0.5}}
named_configs: [base]
""")
    ps = grid.expand(block)
    assert len(ps) == 2 * 3 * 2 * 2
    assert all(p.updates["trainer.epochs"] == 3 and p.named_configs == ("base",) for p in ps)
    assert sorted({p.updates["lr"] for p in ps}) == [1e-4, 1e-3, 1e-2]
    assert {(p.updates["warmup"], p.updates["decay"]) for p in ps} == {(100, 0.9), (1000, 0.99)}
    dropouts = {p.updates["dropout"] for p in ps}
    assert len(dropouts) == 2 and all(0 <= d <= 0.5 for d in dropouts)
    again = grid.expand(load(tmp_path, tmp_path.joinpath("sweep.yaml").read_text()))
    assert [p.updates for p in again] == [p.updates for p in ps], "seeded samples must repeat"


def test_subgrids_are_each_crossed_with_the_rest_and_joined(tmp_path):
    block = load(tmp_path, """
grid: {seed: [1, 2]}
subgrids:
  adam: {fixed: {optimizer: adam}, grid: {lr: [0.1, 0.01]}}
  sgd: {fixed: {optimizer: sgd}, grid: {momentum: [0.0, 0.5, 0.9]}}
""")
    ps = grid.expand(block)
    assert len(ps) == 2 * 2 + 2 * 3
    assert [p.updates["optimizer"] for p in ps] == ["adam"] * 4 + ["sgd"] * 6
    assert "momentum" not in ps[0].updates and "lr" not in ps[-1].updates


def test_range_linspace_choice_and_seml_zip_id(tmp_path):
    block = load(tmp_path, """
grid:
  depth: {type: range, min: 2, max: 8, step: 2}
  width: {type: linspace, min: 32, max: 128, num: 4}
  a: {type: choice, options: [x, y], zip_id: g}
  b: {type: choice, options: [1, 2], zip_id: g}
""")
    ps = grid.expand(block)
    assert sorted({p.updates["depth"] for p in ps}) == [2, 4, 6]
    assert sorted({p.updates["width"] for p in ps}) == [32.0, 64.0, 96.0, 128.0]
    assert {(p.updates["a"], p.updates["b"]) for p in ps} == {("x", 1), ("y", 2)}
    assert len(ps) == 3 * 4 * 2


def test_command_line_combines_with_the_file(tmp_path):
    block = load(tmp_path, "fixed: {lr: 0.1}\ngrid: {batch_size: [16, 32]}\n")
    ps = grid.expand(block, grid.parse_with(["lr=[0.5,0.6]", "batch_size=64"]))
    assert [(p.updates["lr"], p.updates["batch_size"]) for p in ps] == [(0.5, 64), (0.6, 64)]


@pytest.mark.parametrize("text, fragment", [
    ("grid: {lr: [1, 2}\n", "not valid YAML"),
    ("grd: {lr: [1, 2]}\n", "unknown section 'grd'"),
    ("grid: {lr: []}\n", "grid.lr: empty axis"),
    ("grid: {lr: {type: logspce, min: 1, max: 2, num: 2}}\n", "grid.lr: unknown type 'logspce'"),
    ("grid: {lr: {type: linspace, min: 1, max: 2}}\n", "grid.lr: type 'linspace' needs 'num'"),
    ("grid: {lr: 0.1}\n", "grid.lr: expected a list"),
    ("zip: [{a: [1, 2], b: [1]}]\n", "same length"),
    ("random: {samples: 0, lr: {type: uniform, min: 0, max: 1}}\n", "'samples' must be a positive integer"),
    ("random: {samples: 2, lr: {type: gauss}}\n", "random.lr: unknown type 'gauss'"),
    ("subgrids: {a: {grd: {}}}\n", "subgrids.a: unknown section 'grd'"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "the file is empty"),
])
def test_malformed_files(tmp_path, text, fragment):
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_a_command_line_key_over_part_of_a_zip_is_refused(tmp_path):
    from ptslurm.errors import SpecError

    block = load(tmp_path, "zip:\n  - {a: [1, 2], b: [3, 4]}\ngrid:\n  c: [5, 6, 7]\n")
    assert len(grid.expand(block)) == 6
    with pytest.raises(SpecError, match="a is given again although the sweep file zips it with b"):
        grid.expand(block, grid.parse_with(["a=[1]"]))
    both = grid.expand(block, grid.parse_with(["a=[1]", "b=[9]"]))
    assert [p.updates for p in both] == [{"c": c, "a": 1, "b": 9} for c in (5, 6, 7)]
