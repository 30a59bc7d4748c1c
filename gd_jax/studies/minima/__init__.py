"""The local-minima study: are the minima gradient descent finds of equal quality?"""
