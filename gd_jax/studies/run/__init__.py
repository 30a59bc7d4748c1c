"""One training run, from a config to a finished run folder (``experiments/train.py``)."""
