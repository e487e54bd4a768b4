"""`leadcal push hubspot`: the published points as a HubSpot lead score draft, and scores onto contacts.

The export (models/exports/hubspot_score_configuration.json, pipeline.hubspot_config) holds the
Lead Scoring API's create body. Pushing compares it with what HubSpot holds and prints the
difference group by group: `+` create, `~` update (what changes), `=` unchanged, `-` remove,
`!` skip. `--dry-run` stops there and sends only reads; `--apply` writes:

- the score is found by its name ("leadcal lead score"); without one, `POST /scores` creates it
  as a draft; with one, `PUT /scores/{id}/draft` replaces its draft (groups and rules keep the
  ids HubSpot gave them, matched by group name and rule position). leadcal owns this score, so
  a group it no longer has is removed from the draft. Other scores are never touched.
- the draft goes live only with `--publish` (`POST /scores/{id}/draft/publish`), which makes
  HubSpot re-evaluate every contact: a separate, deliberate step.
- rules still in leadcal's names (`mapped: false`: a property or an event type id missing from
  params exports.mapping.hubspot) are skipped unless `--include-unmapped`.
- `--contacts SCORES` (the output of `leadcal score --keep hs_object_id` or `--keep email`)
  writes leadcal's probability, grade and MQL flag to contact properties through the CRM batch
  API, 100 contacts per request, only where HubSpot holds a different value (read first with
  `batch/read`, which the dry run also uses to count the changes).

Credentials: HUBSPOT_ACCESS_TOKEN (a private app's token with the scopes in docs/crm-exports.md),
from the environment only, never printed or written; HUBSPOT_API_URL changes the host (tests, proxies).
429 and 5xx are retried with backoff (10 s for HubSpot's ten-second limit; never for the daily one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.hubspot_config import API_VERSION
from pipeline.push import Client

API = "https://api.hubapi.com"
SCORES = f"/marketing/lead-scoring/{API_VERSION}/scores"
CONTACTS = "/crm/v3/objects/contacts/batch"
BATCH = 100  # contacts per batch request
# leadcal's score column -> the HubSpot contact property it is written to (create them once: docs/crm-exports.md)
CONTACT_PROPERTIES = {"probability": "leadcal_probability", "grade": "leadcal_grade", "mql": "leadcal_mql"}
ID_COLUMNS = ("hs_object_id", "email")  # what a scores file can match contacts on, in order of preference
IDS = uuid.UUID("5d1c8a52-6f1e-4e3a-9a55-7c3b1f0e2a10")  # namespace of the ids leadcal gives new groups and rules


@dataclass(frozen=True)
class Change:
    """One line of the plan."""

    action: str  # "create", "update", "unchanged", "remove", "skip", "publish"
    subject: str
    detail: str = ""
    changed: tuple[str, ...] = field(default=())

    def line(self) -> str:
        mark = {"create": "+", "update": "~", "unchanged": "=", "remove": "-", "skip": "!", "publish": ">"}[self.action]
        detail = f": {', '.join(self.changed)}" if self.changed else f" ({self.detail})" if self.detail else ""
        return f"{mark} {self.action} {self.subject}{detail}"


def body_to_push(export: Mapping[str, Any], include_unmapped: bool) -> tuple[dict[str, Any], list[Change]]:
    """The create body without the unmapped rules (unless asked), and a skip line per group that lost rules."""
    body = {k: v for k, v in export["api"].items() if k != "groupConfigs"}
    mapped = {(r["group"], r["rule"]): r for r in export.get("rules", [])}
    groups, skips = [], []
    for group in export["api"]["groupConfigs"]:
        name = group["groupName"]
        keep = [rule for i, rule in enumerate(group["ruleConfigurations"])
                if include_unmapped or mapped.get((name, i), {}).get("mapped", True)]
        dropped = len(group["ruleConfigurations"]) - len(keep)
        if dropped:
            skips.append(Change("skip", f"{dropped} of {len(group['ruleConfigurations'])} rules in group '{name}'",
                                "unmapped: leadcal's property or event name; map them in params exports.mapping.hubspot "
                                "or use --include-unmapped"))
        if keep:
            groups.append({**group, "ruleConfigurations": keep})
    body["groupConfigs"] = groups
    return body, skips


def _without_ids(value: Any) -> Any:
    """A configuration as comparable content: HubSpot's ids and read-only fields dropped."""
    if isinstance(value, Mapping):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _group_changes(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> tuple[str, ...]:
    changed = [key for key in ("groupCategory", "groupDecay", "maxValue", "minValue")
               if ours.get(key) != theirs.get(key)]
    mine, held = ours["ruleConfigurations"], _without_ids(theirs.get("ruleConfigurations") or [])
    differing = sum(a != b for a, b in zip(mine, held)) + abs(len(mine) - len(held))
    if differing:
        changed.append(f"{differing} of {len(mine)} rules")
    return tuple(changed)


def plan(body: Mapping[str, Any], draft: Mapping[str, Any] | None) -> list[Change]:
    """Group by group, what the push changes in HubSpot's draft (draft None: the score does not exist yet)."""
    name = body["name"]
    if draft is None:
        rules = sum(len(g["ruleConfigurations"]) for g in body["groupConfigs"])
        return [Change("create", f"score '{name}' as a draft", f"{len(body['groupConfigs'])} groups, {rules} rules")] + [
            Change("create", f"group '{g['groupName']}'", f"{len(g['ruleConfigurations'])} rules") for g in body["groupConfigs"]]
    held = {g["groupName"]: g for g in draft.get("groupConfigs") or []}
    changes = []
    top = tuple(k for k in ("maxScorePerCategory", "allowedGroupTypes") if body.get(k) != draft.get(k))
    changes.append(Change("update" if top else "unchanged", f"score '{name}' (draft {draft.get('id')})", changed=top))
    for group in body["groupConfigs"]:
        theirs = held.get(group["groupName"])
        if theirs is None:
            changes.append(Change("create", f"group '{group['groupName']}'", f"{len(group['ruleConfigurations'])} rules"))
        else:
            changed = _group_changes(group, theirs)
            changes.append(Change("update" if changed else "unchanged", f"group '{group['groupName']}'", changed=changed))
    ours = {g["groupName"] for g in body["groupConfigs"]}
    changes += [Change("remove", f"group '{g}'", "not in leadcal's points table") for g in held if g not in ours]
    return changes


def _id(*parts: object) -> str:
    return str(uuid.uuid5(IDS, "/".join(map(str, parts))))


def update_body(body: Mapping[str, Any], draft: Mapping[str, Any]) -> dict[str, Any]:
    """The PUT draft body: every group and rule with an id, HubSpot's own where the group name and
    rule position match, a new stable one (uuid5 of the names) where they do not."""
    held = {g["groupName"]: g for g in draft.get("groupConfigs") or []}
    groups = []
    for group in body["groupConfigs"]:
        theirs = held.get(group["groupName"]) or {}
        their_rules = theirs.get("ruleConfigurations") or []
        rules = [{**rule, "id": their_rules[i]["id"] if i < len(their_rules) and their_rules[i].get("id")
                  else _id(body["name"], group["groupName"], i)} for i, rule in enumerate(group["ruleConfigurations"])]
        groups.append({**group, "id": theirs.get("id") or _id(body["name"], group["groupName"]),
                       "ruleConfigurations": rules})
    return {**{k: v for k, v in body.items() if k != "groupConfigs"}, "groupConfigs": groups}


def find_score(client: Client, name: str) -> str | None:
    """The id of HubSpot's score named `name`, or None (every page of GET /scores)."""
    after = None
    while True:
        page = client.request("GET", f"{SCORES}?limit=100" + (f"&after={after}" if after else ""))
        for score in page.get("results") or []:
            if score.get("name") == name:
                return str(score["id"])
        after = ((page.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return None


def credentials(environ: Mapping[str, str]) -> tuple[str, str]:
    if not environ.get("HUBSPOT_ACCESS_TOKEN"):
        raise LeadcalError("leadcal push hubspot needs HUBSPOT_ACCESS_TOKEN in the environment (a private app's access "
                           "token; never in params or on the command line)")
    return environ.get("HUBSPOT_API_URL") or API, environ["HUBSPOT_ACCESS_TOKEN"]


def push_score(export_path: Path, client: Client, apply: bool, publish: bool, include_unmapped: bool,
               out: Callable[[str], None]) -> list[Change]:
    """Print the difference between the export and HubSpot's draft; with `apply`, save the draft (and publish)."""
    if not export_path.exists():
        raise LeadcalError(f"{export_path}: no HubSpot score configuration; run `leadcal exports` (or `dvc repro`) first")
    export = io.read_json(export_path)
    body, skips = body_to_push(export, include_unmapped)
    if not body["groupConfigs"]:
        raise LeadcalError(f"{export_path}: every rule uses leadcal's names, so there is nothing HubSpot could score; "
                           "map properties and event type ids in params exports.mapping.hubspot, or use --include-unmapped")
    score_id = find_score(client, body["name"])
    draft = client.request("GET", f"{SCORES}/{score_id}/draft") if score_id else None
    changes = plan(body, draft) + skips
    if publish:
        changes.append(Change("publish", f"score '{body['name']}'", "HubSpot re-evaluates every contact"))
    for change in changes:
        out(change.line())
    writes = sum(c.action in ("create", "update", "remove") for c in changes)
    if not apply:
        out(f"dry run, nothing sent: {writes} group or score changes" + (", then publish" if publish else ""))
        return changes
    if draft is None:
        created = client.request("POST", SCORES, body)
        score_id = str(created.get("id") or "")
        if not score_id:
            raise LeadcalError("hubspot: POST /scores answered without the new score's id")
    elif writes:
        client.request("PUT", f"{SCORES}/{score_id}/draft", update_body(body, draft))
    out(f"applied: draft of '{body['name']}' (id {score_id}) " + ("saved" if writes else "already up to date"))
    if publish:
        client.request("POST", f"{SCORES}/{score_id}/draft/publish")
        out(f"published '{body['name']}': HubSpot now re-evaluates contacts")
    else:
        out("not published: check the draft in HubSpot (Marketing > Lead scoring), then publish there or rerun with --publish")
    return changes


def contact_values(scores: pd.DataFrame, origin: object) -> tuple[str, pd.DataFrame]:
    """(the id column, one row per contact with the property values to write, as HubSpot's strings)."""
    by_name = {str(c).lower(): c for c in scores.columns}
    id_column = next((by_name[c] for c in ID_COLUMNS if c in by_name), None)
    if id_column is None:
        raise LeadcalError(f"{origin}: no hs_object_id or email column to match HubSpot contacts on; score with "
                           "`leadcal score ... --keep hs_object_id` (or --keep email)")
    missing = [c for c in CONTACT_PROPERTIES if c not in scores.columns]
    if missing:
        raise LeadcalError(f"{origin}: not a `leadcal score` output: no column {', '.join(missing)}")
    ids = scores[id_column].astype("string").str.strip()
    blank = ids.isna() | (ids == "")
    if blank.any():
        rows = ", ".join(str(i + 2) for i in list(blank[blank].index[:3]))
        raise LeadcalError(f"{origin}: column {id_column}: {int(blank.sum())} rows without an id (e.g. rows {rows})")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise LeadcalError(f"{origin}: column {id_column}: {len(duplicated)} ids appear twice (e.g. {duplicated.iloc[0]!r}); "
                           "one score per contact")
    values = pd.DataFrame({
        "id": ids.to_numpy(),
        CONTACT_PROPERTIES["probability"]: scores["probability"].map(lambda p: f"{float(p):.4f}").to_numpy(),
        CONTACT_PROPERTIES["grade"]: scores["grade"].astype(str).to_numpy(),
        CONTACT_PROPERTIES["mql"]: scores["mql"].map(lambda m: "true" if bool(m) else "false").to_numpy(),
    })
    return str(id_column).lower(), values


def push_contacts(scores_path: Path, client: Client, apply: bool, out: Callable[[str], None]) -> dict[str, int]:
    """Write leadcal's scores to HubSpot contacts where they differ from what HubSpot holds."""
    if not scores_path.exists():
        raise LeadcalError(f"{scores_path}: no such scores file (the output of `leadcal score`)")
    scores = pd.read_parquet(scores_path) if scores_path.suffix.lower() == ".parquet" else \
        pd.read_csv(scores_path, dtype=str, keep_default_na=False)
    if "mql" in scores.columns and not pd.api.types.is_bool_dtype(scores["mql"]):  # a CSV's "True" / "False"
        scores["mql"] = scores["mql"].astype("string").str.strip().str.lower().isin(["true", "1"])
    id_column, values = contact_values(scores, scores_path)
    id_property = {} if id_column == "hs_object_id" else {"idProperty": id_column}
    properties = list(CONTACT_PROPERTIES.values())
    changed, unchanged, unknown = [], 0, []
    for start in range(0, len(values), BATCH):
        batch = values.iloc[start:start + BATCH]
        answer = client.request("POST", f"{CONTACTS}/read", {
            "inputs": [{"id": i} for i in batch["id"]], "properties": properties, "propertiesWithHistory": [],
            **id_property})
        held = {}
        for result in answer.get("results") or []:
            props = result.get("properties") or {}
            key = str(props.get(id_column) if id_property else result.get("id"))
            held[key.lower() if id_property else key] = props
        for row in batch.to_dict("records"):
            current = held.get(row["id"].lower() if id_property else row["id"])
            if current is None:
                unknown.append(row["id"])
            elif any(str(current.get(p) or "") != row[p] for p in properties):
                changed.append(row)
            else:
                unchanged += 1
    out(f"~ update {len(changed)} contacts' {', '.join(properties)}; = {unchanged} unchanged; "
        f"! {len(unknown)} not in HubSpot" + (f" (e.g. {unknown[0]})" if unknown else ""))
    if apply:
        for start in range(0, len(changed), BATCH):
            inputs = [{"id": row["id"], **id_property, "properties": {p: row[p] for p in properties}}
                      for row in changed[start:start + BATCH]]
            answer = client.request("POST", f"{CONTACTS}/update", {"inputs": inputs})
            errors = answer.get("errors") or []
            if errors:
                raise LeadcalError(f"hubspot: {answer.get('numErrors', len(errors))} of {len(inputs)} contacts in a batch "
                                   f"were not updated: {errors[0].get('message', '')}")
        out(f"applied: {len(changed)} contacts updated")
    return {"changed": len(changed), "unchanged": unchanged, "unknown": len(unknown)}


def push_hubspot(export_path: Path, apply: bool, publish: bool = False, include_unmapped: bool = False,
                 contacts: Path | None = None, environ: Mapping[str, str] | None = None,
                 out: Callable[[str], None] = print, client: Client | None = None) -> list[Change]:
    """The score draft (and, with `contacts`, the contacts' scores): printed, and written with `apply`."""
    client = client or Client.bearer(*credentials(os.environ if environ is None else environ))
    changes = push_score(export_path, client, apply, publish, include_unmapped, out)
    if contacts is not None:
        push_contacts(contacts, client, apply, out)
    return changes
