"""The one exception type that gd-jax raises for bad input.

Every message is a paragraph a person can act on: it names the flag or file at
fault and says how to fix it. Entry points print it and exit with status 2; they
never show a traceback for it.
"""


class GdJaxError(Exception):
    """Bad input: a flag, a file or a run folder that cannot be used as given."""
