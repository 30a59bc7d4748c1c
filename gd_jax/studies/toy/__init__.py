"""Gradient descent on tiny functions, where every step can be seen
(``experiments/toy_descent.py``)."""
