"""Benchmarks: Partner Hub against the raw limits of the same machine, measured in the same run."""
