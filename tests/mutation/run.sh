#!/usr/bin/env bash
# Mutation testing of every module with logic against the fast tier (issue 34): mutmut (setup.cfg's
# [mutmut]: the modules, the pytest arguments) makes each mutant and runs the fast tests that reach
# it, in this process or in its Python children (tests/mutation/children.py); score.py prints the
# score per module, writes tests/mutation/table.md and survivors.txt, and fails when a module is
# below 90 % or the score fell below tests/mutation/score.txt. `--record` writes a whole run's score.
#
# A whole run takes many hours on two cores (a mutant of the submission side re-runs its test
# module's pre-flight), so a run may be stopped and continued: `--resume` keeps mutants/, copies
# the tests as they are now, runs the mutants not run yet, then runs the survivors and the mutants
# no test reached again against the current tests. Without it each run starts afresh.
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { .venv/bin/mutmut run --max-children "$(nproc)" "$@" >> mutants-run.log 2>&1 || { tail -30 mutants-run.log; exit 1; }; }
: > mutants-run.log
if [[ " $* " == *" --resume "* && -d mutants ]]; then
  cp -r tests/. mutants/tests/
  run
  mapfile -t again < <(.venv/bin/python tests/mutation/score.py --unkilled)
  if (( ${#again[@]} )); then run "${again[@]}"; fi
else
  rm -rf mutants
  run
fi
.venv/bin/python tests/mutation/score.py "$@"
