"""How the flows are served: ``python -m deployments.serve`` (``make serve``)."""
