"""One error hierarchy for saferails.

Every failure a caller must handle has its own class with a stable ``code`` (never renamed: scripts match on
it) and a message the class builds itself from structured details. Edges map errors to exit codes (the CLI)
or HTTP statuses; the core only raises.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SaferailsError(Exception):
    """Base class. ``code`` is stable; ``details`` is JSON-serialisable context for scripts and audit."""

    code: ClassVar[str] = "SAFERAILS_ERROR"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form printed by ``--json`` and returned by HTTP edges."""
        return {"error_code": self.code, "message": self.message, "details": self.details}


# --- bad input (exit 2) -------------------------------------------------------------------------------------


class InvalidInput(SaferailsError):
    """Input failed validation at a boundary (CLI, API, YAML)."""

    code = "INVALID_INPUT"
    exit_code = 2
    http_status = 400


class UnknownActionType(InvalidInput):
    code = "UNKNOWN_ACTION_TYPE"
    http_status = 422

    def __init__(self, action_type: str, known: list[str] | None = None) -> None:
        known_list = sorted(known or [])
        super().__init__(
            f"unknown action type {action_type!r}; registered types: {', '.join(known_list) or 'none'}",
            action_type=action_type,
            known=known_list,
        )


class InvalidParams(InvalidInput):
    code = "INVALID_PARAMS"
    http_status = 422

    def __init__(self, action_type: str, problems: list[str]) -> None:
        super().__init__(
            f"invalid parameters for {action_type!r}: {'; '.join(problems)}",
            action_type=action_type,
            problems=problems,
        )


class PolicyInvalid(InvalidInput):
    """The policy document is malformed; the message names the offending rule or field."""

    code = "POLICY_INVALID"


class ConditionInvalid(InvalidInput):
    """A condition expression is malformed; the message names the path inside the expression."""

    code = "CONDITION_INVALID"


class ConditionEvaluationError(SaferailsError):
    """A well-formed condition could not be evaluated against the data (e.g. ``gt`` between str and int)."""

    code = "CONDITION_EVALUATION_FAILED"
    exit_code = 2
    http_status = 422


class ConfigurationError(SaferailsError):
    """Settings refused (unsafe or malformed values). Raised once, when settings are loaded."""

    code = "CONFIGURATION_INVALID"
    exit_code = 2


# --- not found (exit 4) -------------------------------------------------------------------------------------


class NotFound(SaferailsError):
    code = "NOT_FOUND"
    exit_code = 4
    http_status = 404

    def __init__(self, entity_type: str, entity_id: str) -> None:
        super().__init__(f"{entity_type} {entity_id!r} not found", entity_type=entity_type, entity_id=entity_id)


class AmbiguousId(InvalidInput):
    """A short id prefix matches more than one entity; the message lists the candidates (up to ten)."""

    code = "AMBIGUOUS_ID"

    def __init__(self, entity_type: str, prefix: str, candidates: list[str]) -> None:
        super().__init__(
            f"{entity_type} id {prefix!r} is ambiguous, it starts several ids: {', '.join(candidates)} "
            "(give more characters)",
            entity_type=entity_type,
            prefix=prefix,
            candidates=candidates,
        )


# --- lifecycle (exit 5) -------------------------------------------------------------------------------------


class LifecycleDefinitionError(SaferailsError):
    """A state machine definition is unsound (dead ends, unreachable states, unknown states)."""

    code = "LIFECYCLE_DEFINITION_INVALID"
    exit_code = 70


class InvalidTransition(SaferailsError):
    code = "INVALID_TRANSITION"
    exit_code = 5
    http_status = 409

    def __init__(self, entity_type: str, current_state: str, target_state: str, entity_id: str | None = None) -> None:
        super().__init__(
            f"{entity_type} transition from {current_state!r} to {target_state!r} is not allowed",
            entity_type=entity_type,
            current_state=current_state,
            target_state=target_state,
            entity_id=entity_id,
        )


class GuardRejected(InvalidTransition):
    """The transition exists but its guard refused it; ``reason`` says why."""

    code = "TRANSITION_GUARD_FAILED"

    def __init__(
        self, entity_type: str, current_state: str, target_state: str, reason: str, entity_id: str | None = None
    ) -> None:
        SaferailsError.__init__(
            self,
            f"{entity_type} transition from {current_state!r} to {target_state!r} refused: {reason}",
            entity_type=entity_type,
            current_state=current_state,
            target_state=target_state,
            reason=reason,
            entity_id=entity_id,
        )


class ConcurrentModification(SaferailsError):
    """Another writer changed the row between read and write; retry with fresh state."""

    code = "CONCURRENT_MODIFICATION"
    exit_code = 5
    http_status = 409


# --- policy refusals (exit 6) -------------------------------------------------------------------------------


class PolicyRefusal(SaferailsError):
    """The policy refused the action. ``decision`` holds the serialised decision."""

    code = "POLICY_REFUSED"
    exit_code = 6
    http_status = 403


class ActionBlocked(PolicyRefusal):
    code = "ACTION_BLOCKED"


class RateLimited(PolicyRefusal):
    code = "RATE_LIMITED"
    http_status = 429


class KycRequired(PolicyRefusal):
    code = "KYC_REQUIRED"


class PolicyEvaluationFailed(PolicyRefusal):
    """The policy could not be evaluated for an action, so it was denied (fail closed)."""

    code = "POLICY_EVALUATION_FAILED"


class RateLimitStoreUnavailable(PolicyRefusal):
    """A rate limit could not be counted and the policy denies in that case (``on_rate_limit_store_error``)."""

    code = "RATE_LIMIT_STORE_UNAVAILABLE"


# --- approvals (exit 7) -------------------------------------------------------------------------------------


class ApprovalError(SaferailsError):
    code = "APPROVAL_REFUSED"
    exit_code = 7
    http_status = 403


class PermissionDenied(ApprovalError):
    code = "PERMISSION_DENIED"


class SelfApprovalRefused(ApprovalError):
    code = "SELF_APPROVAL_REFUSED"


class ApprovalCodeInvalid(ApprovalError):
    code = "APPROVAL_CODE_INVALID"


class ActionChanged(ApprovalError):
    """The approval was given for a different version of the action (hash mismatch)."""

    code = "ACTION_CHANGED"


# --- execution / rollback (exit 8) --------------------------------------------------------------------------


class ExecutionError(SaferailsError):
    code = "EXECUTION_FAILED"
    exit_code = 8


class RollbackError(ExecutionError):
    code = "ROLLBACK_FAILED"


class CircuitOpen(ExecutionError):
    code = "CIRCUIT_OPEN"
    http_status = 503


# --- audit / store (exit 3, 9) ------------------------------------------------------------------------------


class AuditChainBroken(SaferailsError):
    code = "AUDIT_CHAIN_BROKEN"
    exit_code = 3


class StoreUnavailable(SaferailsError):
    code = "STORE_UNAVAILABLE"
    exit_code = 9
    http_status = 503


class ApprovalExpired(ApprovalError):
    code = "APPROVAL_EXPIRED"
    http_status = 410


class IdempotencyConflict(InvalidInput):
    """The idempotency key was already used for a different action (type, target or params differ)."""

    code = "IDEMPOTENCY_CONFLICT"
    http_status = 409


class ExtensionMissing(SaferailsError):
    """A command needs a capability (e.g. running runbooks on Prefect) that no registered extension provides;
    the message says how to enable one."""

    code = "EXTENSION_MISSING"
    exit_code = 2
    http_status = 501


class RunbookWaitTimeout(SaferailsError):
    """``runbook ... --prefect`` waited ``--wait-timeout`` seconds and the execution is still not final."""

    code = "RUNBOOK_WAIT_TIMEOUT"
    exit_code = 11
    http_status = 504


class InternalError(SaferailsError):
    """An unexpected failure (a bug): edges report it with this code instead of a traceback."""

    code = "INTERNAL_ERROR"
    exit_code = 1
    http_status = 500


# --- outgoing requests and webhooks -------------------------------------------------------------------------


class EgressRefused(SaferailsError):
    """An outgoing request (webhook, runbook call-service step) would reach a host the egress policy forbids:
    a private, loopback, link-local, unique-local, multicast or unspecified address not on the allowlist."""

    code = "EGRESS_REFUSED"
    exit_code = 2
    http_status = 403


class WebhookSignatureInvalid(SaferailsError):
    """A received webhook failed verification (missing headers, bad or missing signature, stale timestamp)."""

    code = "WEBHOOK_SIGNATURE_INVALID"
    exit_code = 2
    http_status = 401


# --- the HTTP edge and its callers (401, 403, 413, 422) -------------------------------------------------------


class InsufficientPermissions(PermissionDenied):
    """The authenticated principal lacks the permission an operation needs (``required_permission``)."""

    code = "INSUFFICIENT_PERMISSIONS"

    def __init__(self, principal_id: str, roles: list[str], permission: str) -> None:
        super().__init__(
            f"{principal_id} does not have permission {permission!r}",
            required_permission=permission,
            user_role=roles[0] if len(roles) == 1 else ",".join(roles),
            roles=roles,
        )


class PayloadTooLarge(InvalidInput):
    """A request body is larger than the edge accepts."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class IdempotencyKeyReused(InvalidInput):
    """An ``Idempotency-Key`` was reused for a different request (other body, path or caller)."""

    code = "IDEMPOTENCY_KEY_REUSED"
    http_status = 422


class ApprovalLinkInvalid(ApprovalError):
    """An e-mailed approval link is malformed, forged, expired or for a request that no longer exists. The public
    message is the same in every case; ``details["internal_reason"]`` says which, for logs only."""

    code = "APPROVAL_LINK_INVALID"


# --- integrity and reconciliation (h-exec) -----------------------------------------------------------------


class ActionTampered(ExecutionError):
    """The stored action no longer hashes to the action hash it was proposed and approved under (its type,
    target or parameters were edited in the database): it is refused, audited and alerted, never executed or
    rolled back."""

    code = "ACTION_TAMPERED"
    http_status = 409


class EffectUnknown(RollbackError):
    """Whether the action's effect exists cannot be established (a crash interrupted it and the handler cannot
    tell): nothing is claimed undone; an operator must check the system the handler acts on."""

    code = "EFFECT_UNKNOWN"


# --- identity and approval hardening (exit 10 for authentication) ------------------------------------------


class Unauthenticated(SaferailsError):
    """No credential, or one that is unknown, wrong, expired or revoked. The message never says which: the
    precise reason is in ``details["internal_reason"]`` for the audit trail, not for the caller."""

    code = "UNAUTHENTICATED"
    exit_code = 12
    http_status = 401


class ApprovalLockedOut(ApprovalError):
    """Too many refused approval attempts by this approver on this action; further attempts are refused until
    ``details["locked_until"]``."""

    code = "APPROVAL_LOCKED_OUT"
    http_status = 429


class ApprovalCodesNotConfigured(ApprovalError):
    """The action's decision requires one-time approval codes but this service has no code verifier, so the
    approval is refused (fail closed) instead of being accepted unchecked."""

    code = "APPROVAL_CODES_NOT_CONFIGURED"
    http_status = 503


class SecretFileInsecure(ConfigurationError):
    """A secret or credential file is readable or writable by group or others, or is not a regular file."""

    code = "SECRET_FILE_INSECURE"


class PrincipalExists(InvalidInput):
    """A principal with this id already exists (``add_principal`` never overwrites one)."""

    code = "PRINCIPAL_EXISTS"
    http_status = 409
