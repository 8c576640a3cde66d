#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the whole test suite, SLURM tier included:
# a virtualenv in .venv (the pinned CPU torch first, so pip never fetches CUDA wheels),
# Debian's slurm-wlm packages for the local test cluster, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 'setuptools<81'
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,plot]'
sudo_=""
if [ "$(id -u)" != 0 ]; then sudo_="sudo"; fi
$sudo_ .venv/bin/python tests/slurm_cluster.py install
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
