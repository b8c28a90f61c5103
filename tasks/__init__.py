"""Prefect tasks: thin wrappers over the saferails core (logging and retries live here, decisions do not)."""
