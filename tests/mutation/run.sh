#!/usr/bin/env bash
# Mutation testing of the core against the fast tier (issue 21): mutmut (setup.cfg's [mutmut]:
# the modules, the pytest arguments) makes each mutant and runs the fast tests that reach it;
# score.py prints the score per module and fails when it fell below tests/mutation/score.txt.
# About 25 minutes on two cores. Each run starts afresh (mutmut 3 keeps a surviving mutant's
# result when only the tests changed). `--record` writes the new score to score.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf mutants
.venv/bin/mutmut run --max-children "$(nproc)" > mutants-run.log 2>&1 || { tail -30 mutants-run.log; exit 1; }
.venv/bin/python tests/mutation/score.py "$@"
