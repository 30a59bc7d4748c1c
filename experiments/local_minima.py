"""``gd-jax-local-minima`` from a checkout (the command is :mod:`gd_jax.cli.local_minima`)."""

from gd_jax.cli import local_minima

if __name__ == "__main__":
    local_minima.command()
