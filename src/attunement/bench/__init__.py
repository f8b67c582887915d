"""Benchmarks and the simulated OpenAI-compatible server they run against."""
