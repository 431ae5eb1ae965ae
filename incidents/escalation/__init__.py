"""The escalation policy frozen at open, deadlines and their firing, status updates and regulatory obligations."""
