"""Health targets and the poller, duty heartbeats, the trading emergency stop, maintenance windows."""
