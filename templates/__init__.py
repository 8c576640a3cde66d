"""The files ``ptslurm init`` writes, installed as package data of ``ptslurm.templates``
(found with ``importlib.resources``)."""
