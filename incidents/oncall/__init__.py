"""People, escalation roles, rotations and overrides: who is paged, now or at any time."""
