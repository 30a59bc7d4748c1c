"""gd-jax: gradient descent on the classic MNIST perceptron, in pure JAX.

The front door, for a notebook or a script::

    import gd_jax
    config = gd_jax.TrainConfig(dataset="digits", epochs=10)
    fitted = gd_jax.fit(config)           # trains in memory, as experiments.train would
    fitted.history[-1]["test_accuracy"]   # per-epoch metrics; fitted.params, .summary

``gd_jax.load(config_or_name)`` loads a dataset; the modules below (``model``,
``costs``, ``train``, ...) are the definitions, and ``gd_jax.fast`` the checked
substitutes that make them fast.
"""

__version__ = "0.1.0"
__all__ = ["TrainConfig", "fit", "load"]


def __getattr__(name: str):
    # Imported on first use, so that ``import gd_jax.model`` stays light.
    if name == "TrainConfig":
        from gd_jax.config import TrainConfig

        return TrainConfig
    if name == "fit":
        from gd_jax.studies.run.fit import fit

        return fit
    if name == "load":
        from gd_jax.data import load_config

        return load_config
    raise AttributeError(f"module 'gd_jax' has no attribute {name!r}")
