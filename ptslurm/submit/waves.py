"""``python -m ptslurm.submit.waves SWEEP_DIR``: the body of the small job that submits a sweep's
next wave when the cluster's submit limit kept points waiting (see ``submission.next_wave``)."""
import os
import sys


def main(sweep_dir: str) -> int:
    own = os.environ.get("SLURM_JOB_ID")
    # sbatch from inside a job would hand this job's SLURM_* settings (its memory, its CPUs)
    # to the jobs it submits; they must get their own
    for key in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"]:
        del os.environ[key]
    from ptslurm.submit.submission import next_wave

    submitted = next_wave(sweep_dir, own_job=own)
    print(f"ptslurm: submitted {submitted} waiting point(s)")
    return 0


if __name__ == "__main__":  # run by its own name: its functions are the module's (pickles, coverage), not __main__'s
    from ptslurm.submit import waves as _self

    sys.exit(_self.main(sys.argv[1]))
