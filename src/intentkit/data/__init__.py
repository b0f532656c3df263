"""Prepare, inspect and load datasets: sources, splits, token lengths, plots."""
