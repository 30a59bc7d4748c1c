"""gd-jax: gradient descent on the classic MNIST perceptron, in pure JAX."""

__version__ = "0.1.0"
