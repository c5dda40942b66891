"""Partner access: OAuth 2.0 clients, the token endpoint, revocation and introspection."""
