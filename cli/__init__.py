"""The `hybridrec` command line: the composition root.

It is the one place (with tests and the lab) that may import every layer: batch steps,
the online store, the demo that runs both, and the lab (evaluate, tune) that replays sessions through the
online ranking. Each command builds Settings once and passes it down.
"""
