"""The public status page and its JSON."""
