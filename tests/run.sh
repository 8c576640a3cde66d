#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the whole test suite, SLURM tier included:
# a virtualenv in .venv (the pinned CPU torch first, so pip never fetches CUDA wheels),
# Debian's slurm-wlm packages for the local test cluster, then pytest. The set-up runs once
# per version of setup.cfg (a stamp in .venv), so the fast tier starts in seconds after it.
# With CI set, the README's quick-start command also runs, verbatim, in a clean copy of the
# repository (tests/quickstart.sh): pytest itself never installs anything.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=".venv/.ptslurm-setup-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 'setuptools<81'
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test,plot]'
    rm -f .venv/.ptslurm-setup-*
    touch "$stamp"
fi
sudo_=""
if [ "$(id -u)" != 0 ]; then sudo_="sudo"; fi
$sudo_ .venv/bin/python tests/slurm_cluster.py install
if [ -n "${CI:-}" ] && [ "$*" = "" ]; then
    bash tests/quickstart.sh
fi
# ptslurm's own bytecode, written once (an environment may set PYTHONDONTWRITEBYTECODE, and the
# suite starts thousands of processes that would each compile the package from source)
PYTHONDONTWRITEBYTECODE= .venv/bin/python -m compileall -q ptslurm > /dev/null
# two workers: the SLURM tier in one (tests/conftest.py groups it: one cluster, in order), the
# rest in the other
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 -n 2 --dist loadgroup "$@"
