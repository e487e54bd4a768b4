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

The HTTP client is pipeline.exports.client; `leadcal push hubspot` is pipeline.exports.push_hubspot.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.exports.client import Client, plan_line

ENVIRONMENT = ("MAUTIC_URL", "MAUTIC_USERNAME", "MAUTIC_PASSWORD")
TRIGGER_PREFIX = "leadcal MQL"
LIST_LIMIT = 1000  # per page when listing what Mautic holds


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
        return plan_line(self.action, f"{self.kind} '{self.name}'", self.changed if self.action == "update" else (),
                         self.reason)


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
