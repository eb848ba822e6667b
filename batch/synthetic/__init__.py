"""Synthetic data for demos, tests, the lab and the benchmarks; no production batch step imports it.

``batch.synthetic.generate`` writes raw files that enter through ``batch.ingest`` like any upstream
export, so everything after ingest sees synthetic data exactly as it sees real data.
"""
