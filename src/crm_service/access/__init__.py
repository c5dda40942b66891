"""Who may see and do what: profiles (permission sets), roles, groups and sharing."""
