"""Signed approval links (what the approval e-mail carries). Kept in ``saferails.approvals.links`` so the
composition root can put links into notifications; re-exported here for the web app."""

from saferails.approvals.links import PUBLIC_REASON, ApprovalLinkNotifier, ApprovalLinks, LinkClaims

__all__ = ["PUBLIC_REASON", "ApprovalLinkNotifier", "ApprovalLinks", "LinkClaims"]
