"""``gd-jax-toy-descent`` from a checkout (the command is :mod:`gd_jax.cli.toy_descent`)."""

from gd_jax.cli import toy_descent

if __name__ == "__main__":
    toy_descent.command()
