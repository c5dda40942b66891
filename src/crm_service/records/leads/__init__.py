"""Leads: prospective customers, convertible into a contact (and account)."""
