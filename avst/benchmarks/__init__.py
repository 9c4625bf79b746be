"""Benchmarks beyond the 2022 test set: known files, published numbers, multi-file evaluation, priors."""
