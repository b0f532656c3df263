"""Bulk scoring: a file of any size in, one scored row per text out, resumable after a kill."""
