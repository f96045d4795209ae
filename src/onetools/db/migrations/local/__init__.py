"""Steps of the local chain (every table that is not federated)."""
