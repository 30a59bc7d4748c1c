"""``gd-jax-lr-sweep`` from a checkout (the command is :mod:`gd_jax.cli.lr_sweep`)."""

from gd_jax.cli import lr_sweep

if __name__ == "__main__":
    lr_sweep.command()
