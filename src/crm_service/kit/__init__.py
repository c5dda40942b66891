"""Shared vocabulary below every feature: input schemas and their types.

Nothing here imports a feature package; features import from here.
"""
