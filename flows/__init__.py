"""Prefect flows: each reads like the procedure it runs; the steps are tasks over the saferails core."""
