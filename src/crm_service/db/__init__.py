"""Database: the engine, the per-request session, the declarative Base and repository base."""
