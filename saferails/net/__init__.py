"""Outgoing network access: every request made on behalf of a proposal or configuration goes through
:func:`saferails.net.egress.send`."""

from saferails.net.egress import EgressPolicy, EgressResponse, check_url, send

__all__ = ["EgressPolicy", "EgressResponse", "check_url", "send"]
