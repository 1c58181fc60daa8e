"""The DVC stages: one module per stage of dvc.yaml, each run as `python -m`."""
