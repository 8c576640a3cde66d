"""Words -> points: the grid and sweep files, the profile and the request, the experiment
loaded with sacred, the pre-flight check and the plan (``make``). Nothing here writes or submits."""
