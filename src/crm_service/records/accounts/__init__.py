"""Accounts: the companies contacts belong to."""
