"""Users, passwords and sign-in sessions (opaque bearer tokens, stored hashed)."""
