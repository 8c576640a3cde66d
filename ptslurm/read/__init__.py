"""The read side: point states, results, logs and usage from the files alone (and the
scheduler's read-only answers). Nothing here writes a record or submits a job."""
