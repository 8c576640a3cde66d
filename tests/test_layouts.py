"""Project layouts users have: the environment inside the project (what the README's quick
start makes), a parent-folder helper insert, a conda-like env folder, an editable install of
a helper package. Every sweep runs, the job imports the snapshot's code and the environment's
packages, and the snapshot holds none of the environment."""
import json
import os
import shutil
import subprocess
import sysconfig
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, snapshot_files

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def ptslurm(python, *args, cwd, env=None, timeout=300):
    full = dict(os.environ, PTSLURM_POLL_S="0.2", **(env or {}))
    return subprocess.run([str(python), "-m", "ptslurm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=timeout)


def completed(proc):
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [p["state"] for p in summary["points"]] == ["completed"] * len(summary["points"]), proc.stderr
    return summary


def results(summary):
    out = []
    for p in summary["points"]:
        run = json.loads((Path(p["storage_dir"]) / "sacred" / "1" / "run.json").read_text())
        out.append(run["result"])
    return out


def no_environment_in(summary):
    files = snapshot_files(summary["sweep_dir"])
    assert not [f for f in files if "site-packages" in f or f.startswith(".") or "conda-meta" in f], files
    return files


def test_quick_start_then_init_in_the_project_with_its_venv(tmp_path, venv_inside, no_slurm):
    """README: `python3 -m venv .venv` in the checkout, then `ptslurm init .`, then a sweep."""
    proj = tmp_path / "proj"
    shutil.copytree(REPO / "examples", proj / "examples")
    python = venv_inside(proj / ".venv")
    assert ptslurm(python, "init", ".", cwd=proj).returncode == 0
    summary = completed(ptslurm(python, "sweep", "--json", "--root", tmp_path / "runs", "experiment.py",
                                "with", "lr=[1e-3,1e-4]", cwd=proj))
    assert len(summary["points"]) == 2
    files = no_environment_in(summary)
    assert "experiment.py" in files and "examples/tiny.py" in files
    # and the quick start's own sweep from the same folder
    completed(ptslurm(python, "sweep", "--json", "--root", tmp_path / "runs", "examples/tiny.py",
                      "with", "lr=[0.05,0.1]", "steps=5", cwd=proj))


HELPER_EXP = """
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from common import helpers
    import sacred
    from sacred import Experiment

    ex = Experiment("layered")

    @ex.config
    def config():
        x = 1

    @ex.automain
    def main(x):
        return [x * helpers.FACTOR, helpers.__file__, sacred.__file__]
"""


@pytest.mark.parametrize("where", ["exps", "elsewhere"])
def test_venv_common_and_exps_with_the_parent_insert(tmp_path, venv_inside, where, no_slurm):
    proj = tmp_path / "proj"
    write(proj / "common" / "__init__.py", "")
    write(proj / "common" / "helpers.py", "FACTOR = 3\n")
    write(proj / "exps" / "exp.py", HELPER_EXP)
    python = venv_inside(proj / ".venv")
    cwd = proj / "exps" if where == "exps" else tmp_path
    summary = completed(ptslurm(python, "sweep", "--json", "--root", tmp_path / "runs", proj / "exps" / "exp.py",
                                "with", "x=[1,2]", cwd=cwd))
    code = Path(summary["sweep_dir"]).resolve() / "code"
    for (value, helper, sacred_file), x in zip(results(summary), (1, 2)):
        assert value == 3 * x
        assert Path(helper).resolve() == code / "common" / "helpers.py", "the live tree was imported"
        assert Path(sacred_file).is_relative_to(proj / ".venv"), "sacred comes from the project's venv"
    assert no_environment_in(summary) == ["common/__init__.py", "common/helpers.py", "exps/exp.py"]


def test_a_conda_like_env_folder_inside_the_project(tmp_path, venv_inside, no_slurm):
    """A conda env in the project (a folder with conda-meta/) whose packages come first on the path."""
    proj = tmp_path / "proj"
    write(proj / "exp.py", """
        import sacred
        from sacred import Experiment
        ex = Experiment("conda")

        @ex.automain
        def main():
            return sacred.__file__
    """)
    env = proj / "env"
    (env / "conda-meta").mkdir(parents=True)
    rel = Path(sysconfig.get_paths()["purelib"]).relative_to(sysconfig.get_paths()["data"])
    python = venv_inside(env / "venv")  # the packages, really inside the env folder
    site = env / "venv" / rel
    summary = completed(ptslurm(python, "sweep", "--json", "--root", tmp_path / "runs", "exp.py", cwd=proj,
                                env={"PYTHONPATH": str(site)}))
    assert Path(results(summary)[0]).is_relative_to(env)
    assert no_environment_in(summary) == ["exp.py"]


@pytest.mark.parametrize("src_layout", [False, True], ids=["flat-finder", "src-pth"])
def test_an_editable_helper_package_inside_the_project(tmp_path, src_layout, no_slurm):
    """`pip install -e libs/helper` into the project's own venv: setuptools' import hook (flat
    layout) or a path entry (src layout) names the live folder; the job imports the snapshot's copy."""
    proj = tmp_path / "proj"
    pkg = proj / "libs" / "helper" / ("src" if src_layout else "") / "helper"
    write(proj / "libs" / "helper" / "pyproject.toml", """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "helper"
        version = "0.1"
    """)
    write(pkg / "__init__.py", "VALUE = 5\n")
    write(proj / "exp.py", """
        import helper
        from sacred import Experiment
        ex = Experiment("editable")

        @ex.automain
        def main():
            return [helper.VALUE, helper.__file__]
    """)
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(proj / ".venv")], check=True)
    python = proj / ".venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    outer = sysconfig.get_paths()["purelib"]  # the suite's packages, their own .pth files included
    Path(site, "outer.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "-e", str(proj / "libs" / "helper")], check=True, capture_output=True)
    summary = completed(ptslurm(python, "sweep", "--json", "--root", tmp_path / "runs", "exp.py", cwd=proj))
    value, helper_file = results(summary)[0]
    code = Path(summary["sweep_dir"]).resolve() / "code"
    assert value == 5
    assert Path(helper_file).resolve() == code / pkg.relative_to(proj) / "__init__.py", "the live helper ran"
    assert not [f for f in no_environment_in(summary) if "egg-info" in f or "dist-info" in f]


@pytest.mark.slurm
def test_quick_start_then_init_in_the_project_on_slurm(slurm_cluster, tmp_path, venv_inside):
    """The same layout on the local cluster: the job's python is the project's venv."""
    proj = tmp_path / "proj"
    shutil.copytree(REPO / "examples", proj / "examples")
    python = venv_inside(proj / ".venv")
    assert ptslurm(python, "init", ".", cwd=proj).returncode == 0
    summary = completed(ptslurm(python, "sweep", "--json", "--wait", "--root", tmp_path / "runs", "experiment.py",
                                "with", "lr=[1e-3,1e-4]", cwd=proj))
    assert summary["executor"] == "slurm" and len(summary["points"]) == 2
    no_environment_in(summary)
