"""Who is calling and what they may do: principal, scopes, client-IP resolution."""
