"""The outbox and its transports (SMS/voice provider, email, webhook), with every attempt logged."""
