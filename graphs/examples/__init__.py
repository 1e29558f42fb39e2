"""Runnable examples of tierflow used from a user's own code (see README)."""
