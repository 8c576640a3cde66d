"""What runs on the node: the job's start (``start``, ``python -m ptslurm.job``), a point's
attempt (``point``), its lease, retry policy and packing, and the runtime user code may ask.
Kept empty: user code imports ``ptslurm.job.runtime`` and must not pay for the rest."""
