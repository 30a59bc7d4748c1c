"""The learning-rate study: a sweep over η and seeds, and gradient descent watched closely."""
