"""Offline evaluation: metrics that need no downloaded weights, lmdm's own tagger, reports."""
