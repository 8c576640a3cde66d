#!/usr/bin/env bash
# The README's quick-start command (the `test:venv` block), verbatim, in a clean copy of the
# repository with a fresh HOME, SLURM's client commands on PATH (tests/run.sh installed them)
# and no SLURM configuration at all (no $SLURM_CONF, no slurm.conf): not configured is "no
# SLURM here", so it must set up a virtualenv and run the 4-point sweep locally to the end.
# tests/run.sh calls this in CI, outside pytest.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/ptslurm-quickstart-XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$repo"
git ls-files --cached --others --exclude-standard -z | while IFS= read -r -d '' f; do
    if [ -f "$f" ]; then mkdir -p "$work/copy/$(dirname "$f")"; cp -p "$f" "$work/copy/$f"; fi
done
command="$(awk '/<!-- test:venv -->/{found=1; next} found && /^```bash/{inside=1; next} inside && /^```/{exit} inside{print}' README.md)"
if [ -z "$command" ]; then echo "quickstart.sh: no test:venv block in README.md" >&2; exit 1; fi
mkdir -p "$work/home"
cd "$work/copy"
if ! command -v sbatch >/dev/null || [ -e /etc/slurm/slurm.conf ] || [ -e /etc/slurm-llnl/slurm.conf ]; then
    echo "quickstart.sh: needs SLURM's commands on PATH and no slurm.conf (tests/run.sh installs them)" >&2
    exit 1
fi
out="$(env -u VIRTUAL_ENV -u PYTHONPATH -u SLURM_CONF HOME="$work/home" STORAGE_ROOT="$work/runs" \
    bash -c "$command")"
sweep_dir="$(printf '%s\n' "$out" | tail -n 1)"
runs=$(ls "$work"/runs/tiny/*/sacred/1/run.json | wc -l)
completed=$(grep -l '"status": "COMPLETED"' "$work"/runs/tiny/*/sacred/1/run.json | wc -l)
if [ "$(dirname "$sweep_dir")" != "$work/runs/sweeps" ] || [ "$runs" != 4 ] || [ "$completed" != 4 ]; then
    echo "quickstart.sh: the README's quick start did not run its 4 points ($completed of $runs completed; last line: $sweep_dir)" >&2
    exit 1
fi
echo "quickstart.sh: the README's quick start ran its 4 points in a fresh virtualenv"
