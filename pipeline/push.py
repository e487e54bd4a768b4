"""`leadcal push mautic`: put the published points into Mautic through its REST API, a dry run first.

The export (models/exports/mautic_point_actions.json, pipeline.exports.mautic.mautic_export) already
holds the request bodies. Pushing compares them with what Mautic holds now and prints the
difference: `+` create, `~` update (with the fields that change), `=` unchanged, `!` skipped.
`--dry-run` stops there and sends nothing but GET requests; `--apply` creates and updates.

- Matching: point actions and segments by name (leadcal's names are unique), the MQL point
  trigger by its prefix "leadcal MQL", so a moved threshold updates the trigger rather than
  adding a second one. Nothing leadcal did not create is touched or deleted.
- Point actions still unmapped (`mapped: false`: no form, asset or email ids) are skipped: in
  Mautic an empty list means ANY form, so pushing them would score every sign-up as a demo
  request. `--include-unmapped` pushes them anyway.
- Credentials come from the environment only (MAUTIC_URL, MAUTIC_USERNAME, MAUTIC_PASSWORD:
  Basic auth, which Mautic's API settings must allow); they are never printed, logged or written.
- 429 and 5xx answers are retried with exponential backoff (Retry-After when given); 401/403,
  a refused body (400/422) and anything else end with one line naming the request.

`leadcal push hubspot` is pipeline.push_hubspot; it shares `Client`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import io
from pipeline.errors import LeadcalError

log = logging.getLogger(__name__)

ENVIRONMENT = ("MAUTIC_URL", "MAUTIC_USERNAME", "MAUTIC_PASSWORD")
TRIGGER_PREFIX = "leadcal MQL"
RETRIED = {429, 500, 502, 503, 504}
TEN_SECONDS = 10.0
URL_VARIABLE = {"mautic": "MAUTIC_URL", "hubspot": "HUBSPOT_API_URL"}
LIST_LIMIT = 1000  # per page when listing what Mautic holds


class Client:
    """JSON over HTTP with one Authorization header, retries with backoff on 429/5xx, and one-line errors.

    `service` ("mautic", "hubspot") names the tool in messages and picks how its error bodies read."""

    def __init__(self, base_url: str, authorization: str, service: str = "mautic", retries: int = 4,
                 backoff: float = 0.5, timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        variable = URL_VARIABLE[service]
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
            raise LeadcalError(f"{variable} must be http(s)://host[/path] without credentials in it "
                               "(they go in the environment variables named in docs/crm-exports.md)")
        self.base_url, self.service = base_url.rstrip("/"), service
        self._auth = authorization
        self.retries, self.backoff, self.timeout, self.sleep = retries, backoff, timeout, sleep

    @classmethod
    def basic(cls, base_url: str, username: str, password: str, **options: Any) -> "Client":
        """Mautic: HTTP Basic auth."""
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return cls(base_url, "Basic " + token, "mautic", **options)

    @classmethod
    def bearer(cls, base_url: str, token: str, **options: Any) -> "Client":
        """HubSpot: a private app's access token."""
        return cls(base_url, "Bearer " + token, "hubspot", **options)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                idempotent: bool = True) -> dict[str, Any]:
        """The JSON object the tool answers (empty for an empty answer).

        `idempotent=False` (a create): a 5xx is not retried, since the tool may have done it
        before failing; a 429 is, as the tool refused the request before doing anything."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, method=method, headers={
                "Authorization": self._auth, "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {})})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) checked
                    text = response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", "replace")
                retried = error.code == 429 or (idempotent and error.code in RETRIED)
                if retried and attempt < self.retries and not _daily_limit(text):
                    wait = _retry_after(error.headers.get("Retry-After"), self.backoff * 2 ** attempt)
                    if _policy(text) == "TEN_SECONDLY_ROLLING":  # HubSpot's burst limit: its window is 10 s
                        wait = max(wait, TEN_SECONDS)
                    log.warning("push: %s %s answered %d; retrying in %.1f s", method, path, error.code, wait)
                    self.sleep(wait)
                    continue
                raise LeadcalError(_error_line(self.service, method, path, error.code, text)) from None
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise LeadcalError(f"{self.service}: {method} {path}: cannot reach {self.base_url}: {reason}") from None
            except (ValueError, UnicodeError):  # a header http.client refuses; never echo it: it holds the credentials
                raise LeadcalError(f"{self.service}: {method} {path}: the credentials hold characters an HTTP header "
                                   "cannot carry (a line break or non-ASCII); check the environment variables") from None
            return _json_object(self.service, method, path, text)
        raise AssertionError("unreachable")  # the loop returns or raises


def _json_object(service: str, method: str, path: str, text: str) -> dict[str, Any]:
    """A successful answer's JSON object, or one line saying what came instead (a proxy's HTML page...)."""
    if not text.strip():
        return {}
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        shown = " ".join(text.split())[:120]
        raise LeadcalError(f"{service}: {method} {path} answered with something that is not a JSON object: {shown!r}")
    return answer


def _policy(text: str) -> str:
    """HubSpot's rate-limit policy named in a 429 body ("DAILY", "TEN_SECONDLY_ROLLING"), or ""."""
    try:
        answer = json.loads(text)
    except ValueError:
        return ""
    return str(answer.get("policyName", "")) if isinstance(answer, Mapping) else ""


def _daily_limit(text: str) -> bool:
    """A daily limit resets at midnight: retrying within seconds cannot help."""
    return _policy(text) == "DAILY"


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def _error_line(service: str, method: str, path: str, status: int, text: str) -> str:
    """One line: which request, what status, and the tool's own message (its error body).

    Mautic: {"errors": [{"message": ...}]}; HubSpot: {"message": ..., "errors": [{"message", "in"}]}."""
    try:
        answer = json.loads(text)
        errors = [e for e in answer.get("errors") or [] if isinstance(e, Mapping)]
        parts = [f"{e['in']}: {e.get('message', '')}" if e.get("in") else str(e.get("message", "")) for e in errors]
        if service == "hubspot" and answer.get("message"):
            parts = [str(answer["message"])] + parts
        message = "; ".join(p for p in parts if p) or text[:200]
    except (ValueError, AttributeError):
        message = text[:200]
    message = " ".join(message.split())
    if status in (401, 403):
        hint = ("check MAUTIC_USERNAME / MAUTIC_PASSWORD and that the API and Basic auth are enabled in Mautic's "
                "configuration" if service == "mautic" else
                "check HUBSPOT_ACCESS_TOKEN and that its private app has the scopes in docs/crm-exports.md")
        return f"{service}: {method} {path} was refused ({status}): {hint} ({message})"
    if status == 429:
        return f"{service}: {method} {path}: rate limit reached ({message}); try again later"
    if status in (400, 422):
        return f"{service} refused {method} {path} ({status}): {message}"
    return f"{service}: {method} {path} answered {status}: {message}"


@dataclass(frozen=True)
class Change:
    """One line of the plan: what would be done to one Mautic entity, and why."""

    kind: str  # "point action", "segment", "point trigger"
    action: str  # "create", "update", "unchanged", "skip"
    name: str
    body: Mapping[str, Any] = field(default_factory=dict)
    entity_id: int | None = None
    changed: tuple[str, ...] = ()
    reason: str = ""

    def line(self) -> str:
        mark = {"create": "+", "update": "~", "unchanged": "=", "skip": "!"}[self.action]
        detail = (f": {', '.join(self.changed)}" if self.action == "update" else
                  f" ({self.reason})" if self.reason else "")
        return f"{mark} {self.action} {self.kind} '{self.name}'{detail}"


ENDPOINTS = {  # kind -> (list path, list key, create path, edit path template)
    "point action": ("/api/points", "points", "/api/points/new", "/api/points/{id}/edit"),
    "segment": ("/api/segments", "lists", "/api/segments/new", "/api/segments/{id}/edit"),
    "point trigger": ("/api/points/triggers", "triggers", "/api/points/triggers/new", "/api/points/triggers/{id}/edit"),
}


def _entities(listing: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """A Mautic list answer's entities: an array, or an object keyed by id (both occur in its docs)."""
    found = listing.get(key) or []
    return list(found.values()) if isinstance(found, Mapping) else list(found)


def _differs(body: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields of `body` whose value Mautic holds differently (fields Mautic adds are ignored)."""
    return tuple(sorted(key for key, value in body.items() if current.get(key) != value))


def plan(export: Mapping[str, Any], held: Mapping[str, list[dict[str, Any]]], include_unmapped: bool = False) -> list[Change]:
    """What to create, update or skip so that Mautic holds the export's point actions, segments and trigger."""
    changes: list[Change] = []

    def compare(kind: str, body: Mapping[str, Any], current: Mapping[str, Any] | None) -> Change:
        if current is None:
            return Change(kind, "create", body["name"], body)
        changed = _differs(body, current)
        return Change(kind, "update" if changed else "unchanged", body["name"], body, int(current["id"]), changed)

    points = {p.get("name"): p for p in held.get("point action", [])}
    for entry in export.get("point_actions", []):
        body = entry["api"]
        if not entry.get("mapped") and not include_unmapped:
            changes.append(Change("point action", "skip", body["name"], body, reason=(
                "unmapped: no ids, so Mautic would count ANY one; give them in params exports.mapping.mautic "
                "or use --include-unmapped")))
            continue
        changes.append(compare("point action", body, points.get(body["name"])))
    segments = {s.get("name"): s for s in held.get("segment", [])}
    for entry in export.get("segments", []):
        changes.append(compare("segment", entry["api"], segments.get(entry["api"]["name"])))
    trigger = export.get("point_trigger")
    if trigger is not None:
        ours = [t for t in held.get("point trigger", []) if str(t.get("name", "")).startswith(TRIGGER_PREFIX)]
        changes.append(compare("point trigger", trigger["api"], ours[0] if ours else None))
    return changes


def held_by_mautic(client: Client) -> dict[str, list[dict[str, Any]]]:
    """Every point action, segment and point trigger Mautic holds (GET requests only)."""
    held: dict[str, list[dict[str, Any]]] = {}
    for kind, (path, key, _, _) in ENDPOINTS.items():
        entities: list[dict[str, Any]] = []
        while True:
            page = client.request("GET", f"{path}?limit={LIST_LIMIT}&start={len(entities)}")
            batch = _entities(page, key)
            entities += batch
            if not batch or len(entities) >= int(page.get("total", len(entities))):
                break
        held[kind] = entities
    return held


def credentials(environ: Mapping[str, str]) -> tuple[str, str, str]:
    missing = [name for name in ENVIRONMENT if not environ.get(name)]
    if missing:
        raise LeadcalError(f"leadcal push mautic needs {', '.join(missing)} in the environment (never in params or "
                           "on the command line)")
    return environ["MAUTIC_URL"], environ["MAUTIC_USERNAME"], environ["MAUTIC_PASSWORD"]


def push_mautic(export_path: Path, apply: bool, include_unmapped: bool = False,
                environ: Mapping[str, str] | None = None, out: Callable[[str], None] = print,
                client: Client | None = None) -> list[Change]:
    """Print the difference between the export and Mautic; with `apply`, create and update what differs."""
    if not export_path.exists():
        raise LeadcalError(f"{export_path}: no Mautic export; run `leadcal exports` (or `dvc repro`) first")
    export = io.read_json(export_path)
    client = client or Client.basic(*credentials(os.environ if environ is None else environ))
    changes = plan(export, held_by_mautic(client), include_unmapped)
    for change in changes:
        out(change.line())
    counts = {a: sum(c.action == a for c in changes) for a in ("create", "update", "unchanged", "skip")}
    out(f"{'applying' if apply else 'dry run, nothing sent'}: {counts['create']} to create, {counts['update']} to "
        f"update, {counts['unchanged']} unchanged, {counts['skip']} skipped")
    if not apply:
        return changes
    for change in changes:
        _, _, create, edit = ENDPOINTS[change.kind]
        if change.action == "create":
            client.request("POST", create, change.body)
        elif change.action == "update":
            client.request("PATCH", edit.format(id=change.entity_id), {k: change.body[k] for k in change.changed})
    out(f"applied: {counts['create']} created, {counts['update']} updated in Mautic")
    return changes
