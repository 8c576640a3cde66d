"""Values the command-line parser hands to the verbs: a module of its own, so that
``ptslurm --help`` builds its parser without importing the verbs (and what they import)."""

UNSET = object()  # `none` given for a resource option: unset the profile's value
TAIL_DEFAULT = 1000  # lines of a big log that `logs` shows unless told otherwise
TAIL_FROM_MB = 10
