"""What connects the CRM to other systems: webhooks (an outbox, signed deliveries)."""
