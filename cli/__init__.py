"""The `hybridrec` command line: the composition root.

It is the one place (with tests and the offline evaluation) that may import every layer: batch steps,
the online store, the demo that runs both, and the evaluation that replays sessions through the
online ranking. Each command builds Settings once and passes it down.
"""
