"""The studies, one package each: its config, its run, its tables, its report and its
figures, in files named for what they hold. A study never imports another study: what
two of them share lives in the engine (``gd_jax.sweep``) or in ``gd_jax.report``."""
