"""The page an approval e-mail links to: ``GET /api/actions/approve?token=...`` (also ``/api/actions/reject`` and
``/api/v1/approval-link``).

GET shows what is asked (what, on whom, who asked and why, impact, the rules that demanded approval, a preview of
the change, the deadline) and a form with a reason field and Approve / Reject buttons. It decides nothing: mail
scanners and link previews fetch links. Only the form's POST decides, through ``ActionService.approve/reject``
with the approver, one-time code and action hash bound into the token (channel ``email-link``), so the same
rules hold as for every approval: authorised approver, not the proposer, the current version of the action,
before the deadline, code single use.

No JavaScript. Every value shown is escaped (the agent controls the reason and the params). Defences for the
POST: the token travels only in the form body (never in the form's URL), the request must come from this origin
(``Origin``, else ``Referer``; neither is refused), and the page forbids framing and external resources (CSP).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from saferails.actions.lifecycle import PENDING_APPROVAL
from saferails.actions.models import ActionView
from saferails.api import Store
from saferails.errors import ApprovalLinkInvalid, NotFound, SaferailsError
from saferails.http.executor import Executor
from saferails.http.links import PUBLIC_REASON, ApprovalLinks, LinkClaims
from saferails.http.problems import logger, request_id_of
from saferails.secrets import approval_secret_path, load_or_create_secret

CHANNEL = "email-link"
MAX_REASON = 2000
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    # Same-origin referrers keep the token out of other sites' logs and still let the POST prove its origin.
    "Referrer-Policy": "same-origin",
}
PATHS = ("/api/actions/approve", "/api/actions/reject", "/api/v1/approval-link")

_CSS = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.35rem}table{border-collapse:collapse;width:100%;margin:1rem 0}
th{text-align:left;width:11rem;vertical-align:top;padding:.35rem .6rem;background:#f3f4f6}
td{padding:.35rem .6rem;border-bottom:1px solid #e5e7eb;word-break:break-word}
pre{white-space:pre-wrap;margin:0;font-size:.9rem}.impact-high{color:#b91c1c;font-weight:600}
textarea{width:100%;min-height:5rem;font:inherit}.buttons{margin-top:1rem;display:flex;gap:1rem}
button{font-size:1rem;padding:.55rem 1.4rem;border-radius:.35rem;border:1px solid #555;cursor:pointer}
.approve{background:#15803d;color:#fff;border-color:#15803d}.reject{background:#fff;color:#b91c1c;border-color:#b91c1c}
.note{background:#fef9c3;padding:.6rem .8rem;border-radius:.35rem}.ok{background:#dcfce7}.bad{background:#fee2e2}
footer{margin-top:2rem;color:#6b7280;font-size:.8rem}
"""


def _page(title: str, body: str, request_id: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\">"
        f"<title>{escape(title)} - saferails</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}"
        f"<footer>saferails approval - request id {escape(request_id)}</footer></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
    return f"<pre>{escape(text)}</pre>"


def _rows(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _summary(view: ActionView, claims: LinkClaims, preview: str) -> str:
    rules = [r for r in view.decision.get("reasons", []) if r.get("fired")]
    rule_text = "".join(
        f"<div>{escape(str(r.get('rule_id')))}: {escape(str(r.get('message', '')))}</div>" for r in rules
    ) or "-"
    deadline = view.approval_deadline.isoformat() if view.approval_deadline else "-"
    impact_class = "impact-high" if view.impact == "high" else ""
    return _rows([
        ("What", escape(view.action_type)),
        ("On", escape(view.target)),
        ("Parameters", _pre(view.params)),
        ("Asked by", escape(view.proposer)),
        ("Why", _pre(view.reason or "(no reason given)")),
        ("Impact", f"<span class=\"{impact_class}\">{escape(view.impact)}</span>"),
        ("Rules", rule_text),
        ("Preview", preview),
        ("Approvals", escape(f"{len(view.valid_approvers)} of {view.min_approvals} needed")),
        ("Deadline", escape(deadline)),
        ("You decide as", escape(claims.approver)),
        ("Action", escape(view.id)),
    ])


class ApprovalPage:
    """The link page over a store. ``public_origin`` (``https://host[:port]``) is the origin the form must be
    posted from; default: the origin the request was addressed to (set it behind a reverse proxy)."""

    def __init__(self, store: Store, public_origin: str | None = None, executor: Executor | None = None) -> None:
        self.executor = executor
        self.store = store
        # The key ``compose`` signs the e-mailed links with: the approval secret, else the generated one.
        settings = store.settings
        self.links = ApprovalLinks(settings.approval_key or load_or_create_secret(approval_secret_path(
            settings.data_dir)))
        self.public_origin = public_origin.rstrip("/") if public_origin else None

    def _claims(self, token: str | None) -> LinkClaims:
        if not token:
            raise ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="missing")
        return self.links.verify(token, self.store.clock.now())

    def _preview(self, action_id: str) -> str:
        try:
            return _pre(self.store.execution.preview(action_id)["preview"])
        except SaferailsError as exc:
            return f"<em>no preview: {escape(exc.message)}</em>"

    def _state_note(self, view: ActionView, claims: LinkClaims) -> str | None:
        """Why no form is shown, or None when the approver can still decide."""
        mine = [a for a in view.approvals if a.approver == claims.approver]
        if view.state != PENDING_APPROVAL:
            return f"This request is no longer waiting for approval: the action is <b>{escape(view.state)}</b>."
        if claims.action_hash != view.action_hash:
            return "The action was changed after this link was sent. This link can no longer decide on it."
        if mine:
            last = mine[-1]
            return (f"You already decided: <b>{escape(last.decision)}</b> at {escape(last.created_at.isoformat())}."
                    " Each link decides once.")
        return None

    def show(self, request: Request, token: str | None) -> HTMLResponse:
        rid = request_id_of(request)
        try:
            claims = self._claims(token)
            view = self.store.actions.get(claims.action_id)
        except (ApprovalLinkInvalid, NotFound) as exc:
            return self._error(request, exc)
        note = self._state_note(view, claims)
        summary = _summary(view, claims, self._preview(view.id) if note is None else "-")
        if note is not None:
            return _page("Approval request", f"<p class=\"note\">{note}</p>{summary}", rid)
        form = (
            f"<form method=\"post\" action=\"{escape(request.url.path)}\">"
            f"<input type=\"hidden\" name=\"token\" value=\"{escape(token or '')}\">"
            f"<label for=\"reason\">Reason (recorded in the audit trail)</label>"
            f"<textarea id=\"reason\" name=\"reason\" maxlength=\"{MAX_REASON}\"></textarea>"
            "<div class=\"buttons\">"
            "<button class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>"
            "<button class=\"reject\" type=\"submit\" name=\"decision\" value=\"reject\">Reject</button>"
            "</div></form>"
        )
        intro = (f"<p><b>{escape(view.proposer)}</b> asks to run <b>{escape(view.action_type)}</b> on "
                 f"<b>{escape(view.target)}</b>. Nothing happens until you press a button.</p>")
        return _page("Approval request", intro + summary + form, rid)

    async def decide(self, request: Request) -> HTMLResponse:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return self._error(request, ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="not_a_form"), 415)
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        token = (form.get("token") or [""])[0]
        decision = (form.get("decision") or [""])[0]
        reason = (form.get("reason") or [""])[0][:MAX_REASON]
        if not self._same_origin(request):
            return self._error(request, ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="cross_origin"))
        if decision not in ("approve", "reject"):
            return self._error(request, ApprovalLinkInvalid("choose Approve or Reject", internal_reason="decision"),
                               400)
        try:
            claims = self._claims(token)
            view = await run_in_threadpool(self._decide, claims, decision, reason)
        except SaferailsError as exc:
            return self._error(request, exc)
        word = "approved" if decision == "approve" else "rejected"
        next_step = _next_step(view, self.executor is not None)
        note = (f"<p class=\"note ok\">You {word} this request. The action is now <b>{escape(view.state)}</b>"
                f" ({len(view.valid_approvers)} of {view.min_approvals} approvals).{next_step}</p>")
        return _page(f"You {word} the request", note + _summary(view, claims, "-"), request_id_of(request))

    def _decide(self, claims: LinkClaims, decision: str, reason: str) -> ActionView:
        decide = self.store.actions.approve if decision == "approve" else self.store.actions.reject
        view = decide(claims.action_id, claims.approver, reason=reason, code=claims.code,
                      action_hash=claims.action_hash, channel=CHANNEL)
        if self.executor is not None:
            self.executor.after(view)
        return view

    def _same_origin(self, request: Request) -> bool:
        expected = self.public_origin or f"{request.url.scheme}://{request.headers.get('host', '')}"
        origin = request.headers.get("origin")
        if origin is not None:
            return origin == expected
        referer = request.headers.get("referer")
        if referer:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}" == expected
        return False

    def _error(self, request: Request, exc: SaferailsError, status: int | None = None) -> HTMLResponse:
        internal = exc.details.get("internal_reason")
        if internal:
            logger.info("approval link refused (%s): %s", request_id_of(request), internal)
        code = status or exc.http_status
        message = exc.message if code < 500 else "the server could not complete the request"
        body = (f"<p class=\"note bad\">{escape(message)}</p>"
                f"<p>Error code <code>{escape(exc.code)}</code>. Nothing was decided.</p>")
        return _page("This link cannot decide", body, request_id_of(request), code)


def build_router(page: ApprovalPage) -> APIRouter:
    router = APIRouter(tags=["approval link"])
    for path in PATHS:
        router.add_api_route(path, _get(page), methods=["GET"], response_class=HTMLResponse,
                             summary="The approval page an e-mail links to (decides nothing)")
        router.add_api_route(path, page.decide, methods=["POST"], response_class=HTMLResponse,
                             summary="Approve or reject from the approval page's form", include_in_schema=False)
    return router


def _get(page: ApprovalPage) -> Any:
    def show(request: Request, token: str | None = None) -> HTMLResponse:
        return page.show(request, token)

    return show


def _next_step(view: ActionView, executes: bool) -> str:
    """Approved is not done: say what runs it, so the approver does not wait for nothing (an action proposed over
    HTTP has no flow run waiting for the decision)."""
    if view.state != "approved":
        return ""
    if executes and view.flow_run_id is None and view.scheduled_for is None:
        return " It runs now; its outcome is in the action's audit trail."
    return (" It has not run yet: its flow run continues it, or an operator executes it"
            " (<code>saferails execute</code>, <code>POST /api/v1/actions/{id}/execute</code>), or the recover sweep"
            " does after 15 minutes.")
