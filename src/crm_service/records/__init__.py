"""Leads, contacts and accounts: the CRM's records, and what they share."""
