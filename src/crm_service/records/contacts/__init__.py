"""Contacts: people the organization has a relationship with."""
