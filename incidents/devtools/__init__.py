"""The agent simulator and the demo data; nothing imports this app."""
