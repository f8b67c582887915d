"""Benchmarks that print figures (``attune bench ...``) and the simulated
OpenAI-compatible server they and the tests run against.

Library code only: the options and printing live in :mod:`attunement.cli.bench`.
"""
