"""Approval codes: the one-time codes that prove which approver approved (see ``codes``)."""

from saferails.approvals.codes import (
    ApprovalCodes,
    ApprovalCodesUnavailable,
    approval_notifications,
    approval_requests,
    authorised_approvers,
    codes_required,
    normalise_code,
)
from saferails.approvals.tables import ApprovalCode

__all__ = [
    "ApprovalCode",
    "ApprovalCodes",
    "ApprovalCodesUnavailable",
    "approval_notifications",
    "approval_requests",
    "authorised_approvers",
    "codes_required",
    "normalise_code",
]
