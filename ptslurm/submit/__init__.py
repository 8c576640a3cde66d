"""Submission and the life cycle: the crash-safe submit protocol, the sweep verb's flow,
waves, cancel/resubmit, promotions and re-runs."""
