"""Training helpers in padertorch's style (Trainer, checkpoints, Configurable, Batches),
imported only by user code; they see the job through ``ptslurm.job.runtime`` alone."""
