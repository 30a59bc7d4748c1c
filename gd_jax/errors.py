"""The one exception type that gd-jax raises for bad input.

Every message is a paragraph a person can act on: it names the value or file at
fault and says how to fix it, in the library's terms. Where the value is a config
field, ``field`` names it, so an entry point can point at its flag of the same name.
Entry points print the message and exit with status 2; they never show a traceback
for it.
"""


class GdJaxError(Exception):
    """Bad input: a value, a file or a run folder that cannot be used as given.

    Attributes:
      field: the config field (and so the flag) the value came from, if any.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class DataError(GdJaxError):
    """A dataset that cannot be loaded: an unknown name, bad files or no network."""


# What a message about data that cannot be had offers instead.
OFFLINE_HINT = (
    "Use --dataset=digits (scikit-learn's 8x8 digits, embedded, works offline) or "
    "--dataset=idx:DIR (a folder of the four MNIST-format IDX files, e.g. "
    "/usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist package)."
)
