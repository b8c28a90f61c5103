"""The agents page: ``GET /agents``, the operator's buttons for seed 003's fleet controls.

One server-rendered HTML document, no front-end build step: a table of the caller's agents (status, paused until,
budget and spend) with Pause / Resume / Set budget buttons. Each button opens a confirmation ``<dialog>`` (reason
required; for a pause the duration in minutes, 1 .. 43,200, and the scope: this agent, its department or the
whole fleet of its workspace), shows an in-progress state while the request runs, and ends in a success or error
message naming the action id; a completed action gets an Undo button (its rollback).

Security: the page itself holds no data and decides nothing, so it needs no authentication and adds none. A
small inline script asks for the operator's API key (kept in ``sessionStorage``: gone when the tab closes, never
in a cookie) and calls the JSON API with it as a bearer header: ``GET /api/v1/agents``, ``POST
/api/v1/actions/{action_name}``, ``POST /api/v1/actions/{id}/rollback``. Every check (401, the permission
``actions:{action_name}`` with its 403 body, the workspace, the policy and the approval gate) is the API's, as for
any client. A browser never sends a bearer header by itself, so another site cannot forge these calls (no CSRF
surface). The CSP allows only this page's own script (a per-response nonce) and connections to this origin; the
script writes every value with ``textContent``, never as markup (agent ids and reasons are untrusted).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PATH = "/agents"
MAX_DURATION_MINUTES = 43_200  # 30 days: PauseAgentParams' bound, shown in the dialog
MAX_REASON = 1000

_CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.35rem}table{border-collapse:collapse;width:100%;margin:1rem 0}
th{text-align:left;padding:.35rem .6rem;background:#f3f4f6}td{padding:.35rem .6rem;border-bottom:1px solid #e5e7eb}
button{font-size:.95rem;padding:.35rem .9rem;border-radius:.35rem;border:1px solid #555;cursor:pointer;background:#fff}
button:disabled{opacity:.5;cursor:progress}td button{margin:0 .4rem .2rem 0}
.primary{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.status-paused{color:#b91c1c;font-weight:600}.status-active{color:#15803d}
.note{padding:.6rem .8rem;border-radius:.35rem;margin:1rem 0}.ok{background:#dcfce7}.bad{background:#fee2e2}
.busy{background:#fef9c3}.wait{background:#e0e7ff}dialog{max-width:32rem;border:1px solid #888;border-radius:.5rem}
label{display:block;margin-top:.7rem;font-weight:600}input,select,textarea{font:inherit;width:100%;box-sizing:border-box}
textarea{min-height:4rem}.buttons{margin-top:1rem;display:flex;gap:.8rem;justify-content:flex-end}
.hidden{display:none}footer{margin-top:2rem;color:#6b7280;font-size:.8rem}
"""

_BODY = f"""
<p>Pause, resume and cap the spending of your agents. Every button asks for confirmation; the API applies the
same permissions, policy and approvals as for any other client, and every action is audited.</p>
<form id="signin" class="hidden">
  <label for="api-key">API key (an operator's; kept in this tab only)</label>
  <input id="api-key" type="password" autocomplete="off" required>
  <div class="buttons"><button class="primary" type="submit">Sign in</button></div>
</form>
<div id="fleet" class="hidden">
  <div class="buttons"><button id="reload" type="button">Reload</button>
  <button id="signout" type="button">Forget the key</button></div>
  <table id="agents"><thead><tr><th>Agent</th><th>Workspace</th><th>Department</th><th>Status</th>
  <th>Paused until</th><th>Budget</th><th>Spent this period</th><th>Actions</th></tr></thead><tbody></tbody></table>
</div>
<div id="message" role="status" aria-live="polite" class="note hidden"><span id="message-text"></span>
  <button id="undo" type="button" class="hidden">Undo</button></div>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form id="confirm-form" method="dialog">
    <h2 id="confirm-title"></h2>
    <div id="f-scope"><label for="scope">Scope</label><select id="scope" name="scope">
      <option value="agent">this agent</option><option value="department">its department</option>
      <option value="fleet">the whole fleet of its workspace</option></select></div>
    <div id="f-duration"><label for="duration">Duration (minutes, 1 to {MAX_DURATION_MINUTES})</label>
      <input id="duration" name="duration" type="number" min="1" max="{MAX_DURATION_MINUTES}" step="1" value="30"
      required></div>
    <div id="f-budget"><label for="amount">Amount</label>
      <input id="amount" name="amount" type="number" min="0" step="0.01">
      <label for="currency">Currency</label><input id="currency" name="currency" pattern="[A-Z]{{3}}" value="EUR">
      <label for="period">Period</label><select id="period" name="period"><option>day</option><option>week</option>
      <option selected>month</option></select></div>
    <label for="reason">Reason (required; recorded in the audit trail)</label>
    <textarea id="reason" name="reason" maxlength="{MAX_REASON}" required></textarea>
    <p id="confirm-note"></p>
    <div class="buttons"><button id="cancel" type="button">Cancel</button>
    <button id="confirm-button" class="primary" type="submit">Confirm</button></div>
  </form>
</dialog>
"""

# Plain ES2017, no library. Values reach the DOM only through textContent / value / dataset.
_SCRIPT = r"""
"use strict";
const KEY = "saferails.apiKey";
const $ = (id) => document.getElementById(id);
const LABELS = {pause_agent: "Pause", resume_agent: "Resume", set_budget: "Set budget"};
const DONE = {pause_agent: "Paused", resume_agent: "Resumed", set_budget: "Set the budget of"};
let pending = null;

function key() { return sessionStorage.getItem(KEY); }

async function call(method, path, body) {
  const headers = {"Authorization": "Bearer " + key(), "Accept": "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                      credentials: "omit", cache: "no-store"});
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return {status: response.status, data: data || {}};
}

function say(kind, text, undoId) {
  const box = $("message");
  box.className = "note " + kind;
  $("message-text").textContent = text;
  const undo = $("undo");
  undo.classList.toggle("hidden", !undoId);
  undo.dataset.action = undoId || "";
}

function busy(on) {
  document.querySelectorAll("button").forEach((b) => { b.disabled = on; });
  document.body.setAttribute("aria-busy", on ? "true" : "false");
}

function problem(status, data) {
  const code = data.code || "HTTP_" + status;
  const text = data.detail || data.message || data.error_message || "the request failed";
  const id = data.action_id ? " (action " + data.action_id + ")" : "";
  return "Error " + status + " " + code + ": " + text + id;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

async function load() {
  if (!key()) { $("signin").classList.remove("hidden"); $("fleet").classList.add("hidden"); return; }
  const {status, data} = await call("GET", "/api/v1/agents");
  if (status === 401) {
    sessionStorage.removeItem(KEY);
    $("signin").classList.remove("hidden"); $("fleet").classList.add("hidden");
    say("bad", problem(status, data));
    return;
  }
  if (status !== 200) { say("bad", problem(status, data)); return; }
  $("signin").classList.add("hidden"); $("fleet").classList.remove("hidden");
  const body = $("agents").tBodies[0];
  body.replaceChildren();
  for (const agent of data.items) {
    const row = document.createElement("tr");
    row.dataset.agent = agent.id;
    cell(row, agent.id); cell(row, agent.tenant); cell(row, agent.department || "-");
    cell(row, agent.status, "status status-" + agent.status);
    cell(row, agent.paused_until || "-", "paused-until");
    const b = agent.budget;
    cell(row, b ? b.amount + " " + b.currency + " per " + b.period : "none");
    cell(row, b ? b.spent_in_period + " " + b.currency : "-");
    const actions = cell(row, "");
    for (const name of ["pause_agent", "resume_agent", "set_budget"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = LABELS[name];
      button.addEventListener("click", () => openDialog(name, agent));
      actions.appendChild(button);
    }
    body.appendChild(row);
  }
  if (data.items.length === 0) {
    const row = document.createElement("tr");
    row.id = "no-agents";
    cell(row, "No agents in your workspaces yet. An operator registers one with the principal id it proposes " +
         "under: saferails agent register ID --tenant WORKSPACE [--department D].").colSpan = 8;
    body.appendChild(row);
  }
}

function openDialog(name, agent) {
  pending = {name, agent};
  $("confirm-title").textContent = LABELS[name] + " " + agent.id;
  $("f-scope").classList.toggle("hidden", name === "set_budget");
  $("f-duration").classList.toggle("hidden", name !== "pause_agent");
  $("duration").disabled = name !== "pause_agent";
  $("f-budget").classList.toggle("hidden", name !== "set_budget");
  for (const id of ["amount", "currency"]) {
    $(id).disabled = name !== "set_budget";
    $(id).required = name === "set_budget";
  }
  $("scope").value = "agent";
  $("reason").value = "";
  $("confirm-note").textContent = "Workspace " + agent.tenant + ", department " + (agent.department || "-") +
    ". A department or fleet pause is high impact: it waits for approval.";
  $("confirm").showModal();
}

function bodyFor(name, agent) {
  const scope = name === "set_budget" ? "agent" : $("scope").value;
  const out = {scope, reason: $("reason").value, workspace_id: agent.tenant};
  if (scope === "agent") out.agent_id = agent.id;
  if (scope === "department") out.department = agent.department;
  if (name === "pause_agent") out.duration_minutes = Number($("duration").value);
  if (name === "set_budget") {
    out.amount = $("amount").value; out.currency = $("currency").value; out.period = $("period").value;
  }
  return out;
}

async function confirmAction(event) {
  event.preventDefault();
  if (!$("confirm-form").reportValidity()) return;
  const {name, agent} = pending;
  const body = bodyFor(name, agent);
  $("confirm").close();
  busy(true);
  say("busy", LABELS[name] + " " + agent.id + ": in progress...");
  try {
    const {status, data} = await call("POST", "/api/v1/actions/" + name, body);
    if (status === 200 && data.status === "completed") {
      say("ok", DONE[name] + " " + agent.id + " (scope " + body.scope + "): action " + data.action_id + " completed.",
          data.action_id);
    } else if (status === 202) {
      say("wait", "Waiting for approval: action " + data.action_id + " (" + data.status + ").");
    } else {
      say("bad", problem(status, data));
    }
  } catch (e) {
    say("bad", "Error: the API could not be reached (" + e + ").");
  } finally {
    busy(false);
  }
  await load();
}

async function undo() {
  const id = $("undo").dataset.action;
  busy(true);
  say("busy", "Undoing action " + id + ": in progress...");
  try {
    const {status, data} = await call("POST", "/api/v1/actions/" + encodeURIComponent(id) + "/rollback",
                                      {reason: "undone from the agents page"});
    if (status === 200 && data.state === "rolled_back") say("ok", "Undid action " + id + ": rolled back.");
    else say("bad", problem(status, data.action_id ? data : Object.assign({action_id: id}, data)));
  } catch (e) {
    say("bad", "Error: the API could not be reached (" + e + ").");
  } finally {
    busy(false);
  }
  await load();
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("api-key").value);
  $("api-key").value = "";
  load();
});
$("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
$("reload").addEventListener("click", load);
$("cancel").addEventListener("click", () => $("confirm").close());
$("confirm-form").addEventListener("submit", confirmAction);
$("undo").addEventListener("click", undo);
load();
"""


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; "
            "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }


def render() -> HTMLResponse:
    """The page, with a fresh script nonce."""
    nonce = secrets.token_urlsafe(18)
    html = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\">"
        f"<title>Agents - saferails</title><style>{_CSS}</style></head><body>"
        f"<h1>Agents</h1>{_BODY}"
        "<footer>saferails fleet controls - the JSON API behind this page is documented at "
        "<a href=\"/docs\">/docs</a></footer>"
        f"<script nonce=\"{nonce}\">{_SCRIPT}</script></body></html>"
    )
    return HTMLResponse(html, headers=_headers(nonce))


def build_router() -> APIRouter:
    router = APIRouter(tags=["fleet controls"])
    router.add_api_route(PATH, render, methods=["GET"], response_class=HTMLResponse,
                         summary="The agents page: Pause / Resume / Set budget buttons over the JSON API")
    return router


__all__ = ["PATH", "build_router", "render"]
