"""The commands: absl flags generated from the configs, one library call each, a run
folder; installed as gd-jax-train, gd-jax-lr-sweep, gd-jax-local-minima and
gd-jax-toy-descent (``python -m experiments.<name>`` from a checkout)."""
