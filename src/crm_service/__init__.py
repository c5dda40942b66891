"""crm-service: a security- and privacy-first CRM backend."""

__version__ = "0.1.0"
