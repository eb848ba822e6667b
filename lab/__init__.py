"""Offline evaluation of the whole system: batch artifacts ranked by the online ranking code.

The replay protocol must exercise the same ranking the API serves (online.ranking), on models built
by batch, so this package sits above both layers; batch and online still never import each other.
"""
