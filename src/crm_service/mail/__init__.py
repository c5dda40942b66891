"""Mail: an outbox written in the caller's transaction, sent by the worker's dispatcher."""
