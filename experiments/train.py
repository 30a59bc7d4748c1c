"""``gd-jax-train`` from a checkout (the command is :mod:`gd_jax.cli.train`)."""

from gd_jax.cli import train

if __name__ == "__main__":
    train.command()
