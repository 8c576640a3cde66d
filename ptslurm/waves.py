"""``python -m ptslurm.waves SWEEP_DIR``: the body of the small job that submits a sweep's
next wave when the cluster's submit limit kept points waiting (see ``sweep.next_wave``)."""
import sys

from ptslurm.sweep import next_wave

if __name__ == "__main__":
    submitted = next_wave(sys.argv[1])
    print(f"ptslurm: submitted {submitted} waiting point(s)")
