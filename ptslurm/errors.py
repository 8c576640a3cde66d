"""One exception hierarchy for ptslurm.

Every error subclasses the builtin a caller would catch, carries a one-line message that
says what is wrong and how to fix it, and pickles cleanly (it may cross a submitit pickle).
Only ``ptslurm.cli.main`` turns these into exit codes.
"""


class PtslurmError(Exception):
    """Base of all ptslurm errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message,))

    def __str__(self) -> str:
        return self.message


class UsageError(PtslurmError, ValueError):
    """Bad input on the command line or in a sweep file (exit code 2)."""

    exit_code = 2


class SpecError(UsageError):
    """A sweep specification (``with`` updates or a sweep file) is malformed."""


class ExperimentError(UsageError):
    """The experiment file cannot be loaded or a point's config cannot be built."""


class StorageError(PtslurmError, OSError):
    """A storage root or sweep directory cannot be used."""

    exit_code = 2


class ManifestError(StorageError):
    """A sweep manifest is missing, corrupt or of an unknown schema."""


class SubmissionError(PtslurmError, RuntimeError):
    """The scheduler refused or failed to take the jobs."""


class SubmissionRejected(SubmissionError):
    """sbatch refused the request before anything was created (bad resources: exit code 2)."""

    exit_code = 2


class PointsFailed(PtslurmError, RuntimeError):
    """``--wait`` saw at least one point end in a state other than completed."""


class SnapshotError(UsageError):
    """The code snapshot cannot be made (too big, too wide) or no longer matches what was
    submitted."""


class AdapterError(PtslurmError, RuntimeError):
    """An installed library (sacred, submitit) no longer has what ptslurm relies on: the
    message names each change and the versions the suite ran against."""


class LeaseHeld(PtslurmError, RuntimeError):
    """Another live attempt holds the storage dir (the lease): this one stands down."""
