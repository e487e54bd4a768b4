"""`leadcal push hubspot`: the published points as a HubSpot lead score draft, and scores onto contacts.

The export (models/exports/hubspot_score_configuration.json, pipeline.exports.hubspot_api) holds the
Lead Scoring API's create body. Pushing compares it with what HubSpot holds and prints the
difference group by group: `+` create, `~` update (what changes), `=` unchanged, `-` remove,
`!` skip. `--dry-run` stops there and sends only reads; `--apply` writes:

- the score is found by its name ("leadcal lead score"); without one, `POST /scores` creates it
  as a draft; with one, `PUT /scores/{id}/draft` replaces its draft (groups keep the ids HubSpot
  gave them by name, rules by content, then in order). leadcal owns this score, so a group it no
  longer has is removed from the draft; a group whose rules are all skipped (unmapped) is kept
  as HubSpot holds it. Other scores are never touched.
- the draft goes live only with `--publish` (`POST /scores/{id}/draft/publish`), which makes
  HubSpot re-evaluate every contact: a separate, deliberate step.
- rules still in leadcal's names (`mapped: false`: a property or an event type id missing from
  params exports.mapping.hubspot) are skipped unless `--include-unmapped`.
- `--contacts SCORES` (the output of `leadcal score --keep hs_object_id` or `--keep email`)
  writes leadcal's probability, grade and MQL flag to contact properties through the CRM batch
  API, 100 contacts per request, only where HubSpot holds a different value: contacts are read
  first (`batch/read`, by id or e-mail; the dry run reads too, to count the changes), then
  updated by the id HubSpot answered with.

Credentials: HUBSPOT_ACCESS_TOKEN (a private app's token with the scopes in docs/crm-exports.md),
from the environment only, never printed or written; HUBSPOT_API_URL changes the host (tests, proxies).
429 and 5xx are retried with backoff (10 s for HubSpot's ten-second limit; never for the daily one).
"""

from __future__ import annotations

import copy
import os
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import io
from pipeline.data.contract import line_examples
from pipeline.errors import LeadcalError
from pipeline.exports.client import Client, plan_line
from pipeline.exports.hubspot_api import API_VERSION, FORMAT
from pipeline.exports.hubspot_api import CONTACTS as CONTACTS_TYPE

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
        return plan_line(self.action, self.subject, self.changed, self.detail)


def _export(path: Path) -> dict[str, Any]:
    """The configuration file, checked to be leadcal's before anything is sent."""
    export = io.read_json(path)
    api = export.get("api") if isinstance(export, Mapping) else None
    groups = api.get("groupConfigs") if isinstance(api, Mapping) else None
    if (not isinstance(export, Mapping) or export.get("format") != FORMAT or not isinstance(groups, list)
            or not all(isinstance(g, Mapping) and isinstance(g.get("ruleConfigurations"), list) for g in groups)):
        raise LeadcalError(f"{path}: not a leadcal HubSpot score configuration (format {FORMAT}); "
                           "rewrite it with `leadcal exports`")
    return dict(export)


def body_to_push(export: Mapping[str, Any], include_unmapped: bool) -> tuple[dict[str, Any], list[Change], set[str]]:
    """The create body without the unmapped rules (unless asked), a skip line per group that lost rules,
    and the groups that lost all of them (HubSpot keeps its own version of those)."""
    body = {k: v for k, v in export["api"].items() if k != "groupConfigs"}
    mapped = {(r["group"], r["rule"]): r for r in export.get("rules", [])}
    groups, skips, emptied = [], [], set()
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
        else:
            emptied.add(name)
    body["groupConfigs"] = groups
    return body, skips, emptied


def _without_ids(value: Any) -> Any:
    """A configuration as comparable content: HubSpot's ids dropped."""
    if isinstance(value, Mapping):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _groups(draft: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    groups = (draft or {}).get("groupConfigs") or []
    return {g["groupName"]: g for g in groups if isinstance(g, Mapping) and "groupName" in g}


def _group_changes(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> tuple[str, ...]:
    changed = [key for key in ("groupCategory", "groupDecay", "maxValue", "minValue")
               if ours.get(key) != theirs.get(key)]
    held = [_without_ids(rule) for rule in theirs.get("ruleConfigurations") or []]
    unmatched = list(held)
    new = 0
    for rule in ours["ruleConfigurations"]:
        if rule in unmatched:
            unmatched.remove(rule)
        else:
            new += 1
    if new or unmatched:
        changed.append(f"{max(new, len(unmatched))} of {len(ours['ruleConfigurations'])} rules")
    return tuple(changed)


def plan(body: Mapping[str, Any], draft: Mapping[str, Any] | None, kept: set[str] = frozenset()) -> list[Change]:
    """Group by group, what the push changes in HubSpot's draft (draft None: the score does not exist yet).
    `kept`: groups whose rules are all skipped here; HubSpot's version of them stays."""
    name = body["name"]
    if draft is None:
        rules = sum(len(g["ruleConfigurations"]) for g in body["groupConfigs"])
        return [Change("create", f"score '{name}' as a draft", f"{len(body['groupConfigs'])} groups, {rules} rules")] + [
            Change("create", f"group '{g['groupName']}'", f"{len(g['ruleConfigurations'])} rules") for g in body["groupConfigs"]]
    held = _groups(draft)
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
    for group in held:
        if group in kept:
            changes.append(Change("unchanged", f"group '{group}'", "kept as HubSpot holds it: its rules are unmapped here"))
        elif group not in ours:
            changes.append(Change("remove", f"group '{group}'", "not in leadcal's points table"))
    return changes


def _id(*parts: object) -> str:
    return str(uuid.uuid5(IDS, "/".join(map(str, parts))))


def _criterion(rule: Mapping[str, Any]) -> Any:
    """A rule without its points: what it matches (a rule whose points moved is still the same rule)."""
    shape = copy.deepcopy(_without_ids(rule))
    shape.pop("maximumValue", None)
    shape.pop("minimumValue", None)
    calculation = (shape.get("configuration") or {}).get("calculation") or {}
    calculation.pop("value", None)
    for entry in calculation.get("eventCalculators") or []:
        (entry.get("recordCalculation") or {}).pop("value", None)
        for band in (entry.get("eventFrequencyCriteria") or {}).get("ranges") or []:
            band.pop("value", None)
    return shape


def _rules_with_ids(score: str, group: str, rules: list[dict[str, Any]], held: list[Any]) -> list[dict[str, Any]]:
    """Each rule with an id: the id of the held rule with the same content, else of the held rule
    matching the same thing with other points, else a new stable one (uuid5 of the names)."""
    free = [r for r in held if isinstance(r, Mapping) and r.get("id")]
    ids: list[str | None] = [None] * len(rules)
    for same in (lambda r: _without_ids(r), _criterion):  # exact content first, then the criterion alone
        for i, rule in enumerate(rules):
            if ids[i] is None:
                match = next((r for r in free if same(r) == same(rule)), None)
                if match is not None:
                    free.remove(match)
                    ids[i] = match["id"]
    return [{**rule, "id": rule_id or _id(score, group, i)} for i, (rule, rule_id) in enumerate(zip(rules, ids))]


def update_body(body: Mapping[str, Any], draft: Mapping[str, Any], kept: set[str] = frozenset()) -> dict[str, Any]:
    """The PUT draft body: every group and rule with an id (HubSpot's own where they match, a new stable
    one otherwise); the groups in `kept` and the draft's list filter as HubSpot holds them. Outputs are
    left out: HubSpot merges them by id, so its score properties stay."""
    held = _groups(draft)
    groups = []
    for group in body["groupConfigs"]:
        theirs = held.get(group["groupName"]) or {}
        rules = _rules_with_ids(body["name"], group["groupName"], group["ruleConfigurations"],
                                theirs.get("ruleConfigurations") or [])
        groups.append({**group, "id": theirs.get("id") or _id(body["name"], group["groupName"]), "ruleConfigurations": rules})
    groups += [held[name] for name in sorted(kept) if name in held]
    update = {**{k: v for k, v in body.items() if k != "groupConfigs"}, "groupConfigs": groups}
    if isinstance(draft.get("filterConfiguration"), Mapping):
        update["filterConfiguration"] = draft["filterConfiguration"]
    return update


def find_score(client: Client, name: str) -> str | None:
    """The id of HubSpot's contact score named `name`, or None (every page of GET /scores)."""
    after, seen = None, set()
    while True:
        page = client.request("GET", f"{SCORES}?limit=100" + (f"&after={urllib.parse.quote(str(after))}" if after else ""))
        results = page.get("results")
        if not isinstance(results, list):
            raise LeadcalError(f"hubspot: GET {SCORES} answered without a list of scores (results)")
        for score in results:
            if (isinstance(score, Mapping) and score.get("name") == name and score.get("id") is not None
                    and score.get("scoredObjectTypeId", CONTACTS_TYPE) == CONTACTS_TYPE):
                return str(score["id"])
        paging = page.get("paging")
        after = ((paging.get("next") or {}) if isinstance(paging, Mapping) else {}).get("after")
        if not after or after in seen:  # no next page, or a cursor seen before: stop rather than loop
            return None
        seen.add(after)


def credentials(environ: Mapping[str, str]) -> tuple[str, str]:
    token = (environ.get("HUBSPOT_ACCESS_TOKEN") or "").strip()
    if not token:
        raise LeadcalError("leadcal push hubspot needs HUBSPOT_ACCESS_TOKEN in the environment (a private app's access "
                           "token; never in params or on the command line)")
    if not all(33 <= ord(c) < 127 for c in token):  # never echoed: it is the secret
        raise LeadcalError("HUBSPOT_ACCESS_TOKEN holds a space, a line break or a non-ASCII character; copy the token "
                           "again from the private app")
    return environ.get("HUBSPOT_API_URL") or API, token


def push_score(export_path: Path, client: Client, apply: bool, publish: bool, include_unmapped: bool,
               out: Callable[[str], None]) -> list[Change]:
    """Print the difference between the export and HubSpot's draft; with `apply`, save the draft (and publish)."""
    if not export_path.exists():
        raise LeadcalError(f"{export_path}: no HubSpot score configuration; run `leadcal exports` (or `dvc repro`) first")
    body, skips, emptied = body_to_push(_export(export_path), include_unmapped)
    if not body["groupConfigs"]:
        raise LeadcalError(f"{export_path}: every rule uses leadcal's names, so there is nothing HubSpot could score; "
                           "map properties and event type ids in params exports.mapping.hubspot, or use --include-unmapped")
    score_id = find_score(client, body["name"])
    draft = client.request("GET", f"{SCORES}/{score_id}/draft") if score_id else None
    kept = emptied & set(_groups(draft))
    changes = plan(body, draft, kept) + skips
    if publish:
        changes.append(Change("publish", f"score '{body['name']}'", "HubSpot re-evaluates every contact"))
    for change in changes:
        out(change.line())
    writes = sum(c.action in ("create", "update", "remove") for c in changes)
    if not apply:
        out(f"dry run, nothing sent: {writes} group or score changes" + (", then publish" if publish else ""))
        return changes
    if draft is None:  # not retried on 5xx: HubSpot may have created it; the next run finds it by name
        created = client.request("POST", SCORES, body, idempotent=False)
        score_id = str(created.get("id") or "")
        if not score_id:
            raise LeadcalError("hubspot: POST /scores answered without the new score's id")
    elif writes:
        client.request("PUT", f"{SCORES}/{score_id}/draft", update_body(body, draft, kept))
    out(f"applied: draft of '{body['name']}' (id {score_id}) " + ("saved" if writes else "already up to date"))
    if publish:
        client.request("POST", f"{SCORES}/{score_id}/draft/publish")
        out(f"published '{body['name']}': HubSpot now re-evaluates contacts")
    else:
        out("not published: check the draft in HubSpot (Marketing > Lead scoring), then publish there or rerun with --publish")
    return changes


def _mql_flags(values: pd.Series, origin: object) -> pd.Series:
    """leadcal score's MQL column as booleans: True/False, true/false or 1/0, nothing else."""
    if pd.api.types.is_bool_dtype(values) and not values.isna().any():
        return values.astype(bool)
    text = values.astype("string").str.strip().str.lower()
    known = text.isin(["true", "false", "1", "0", "1.0", "0.0"]).fillna(False)
    if not known.all():
        raise LeadcalError(f"{origin}: column mql: {int((~known).sum())} values are not true/false "
                           f"({line_examples(values[~known])})")
    return text.isin(["true", "1", "1.0"]).astype(bool)


def _ids(values: pd.Series) -> pd.Series:
    """Contact ids as text; whole numbers read as floats (a Parquet column with gaps) lose their '.0'."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == whole.round()).all():
            return values.astype("Int64").astype("string")
    return values.astype("string").str.strip()


def contact_values(scores: pd.DataFrame, origin: object) -> tuple[str, pd.DataFrame]:
    """(the id column, one row per contact with the property values to write, as HubSpot's strings)."""
    scores = scores.reset_index(drop=True)
    by_name = {str(c).lower(): c for c in scores.columns}
    id_column = next((by_name[c] for c in ID_COLUMNS if c in by_name), None)
    if id_column is None:
        raise LeadcalError(f"{origin}: no hs_object_id or email column to match HubSpot contacts on; score with "
                           "`leadcal score ... --keep hs_object_id` (or --keep email)")
    missing = [c for c in CONTACT_PROPERTIES if c not in scores.columns]
    if missing:
        raise LeadcalError(f"{origin}: not a `leadcal score` output: no column {', '.join(missing)}")
    key = str(id_column).lower()
    ids = _ids(scores[id_column])
    if key == "email":
        ids = ids.str.lower()  # HubSpot matches e-mail addresses whatever their case
    blank = (ids.isna() | (ids == "")).fillna(True)
    if blank.any():
        raise LeadcalError(f"{origin}: column {id_column}: {int(blank.sum())} rows without an id "
                           f"({line_examples(scores.loc[blank, id_column])})")
    duplicated = ids.duplicated()
    if duplicated.any():
        raise LeadcalError(f"{origin}: column {id_column}: {int(duplicated.sum())} ids appear twice (e.g. "
                           f"{ids[duplicated].iloc[0]!r}); one score per contact")
    probability = pd.to_numeric(scores["probability"], errors="coerce")
    bad = (probability.isna() | (probability < 0) | (probability > 1)).fillna(True)
    if bad.any():
        raise LeadcalError(f"{origin}: column probability: {int(bad.sum())} values are not between 0 and 1 "
                           f"({line_examples(scores.loc[bad, 'probability'])})")
    grade = scores["grade"].astype("string").str.strip()
    no_grade = (grade.isna() | (grade == "")).fillna(True)
    if no_grade.any():
        raise LeadcalError(f"{origin}: column grade: {int(no_grade.sum())} rows without a grade "
                           f"({line_examples(scores.loc[no_grade, 'grade'])})")
    values = pd.DataFrame({
        "id": ids.to_numpy(dtype=object),
        CONTACT_PROPERTIES["probability"]: probability.map(lambda p: f"{p:.4f}").to_numpy(),
        CONTACT_PROPERTIES["grade"]: grade.to_numpy(dtype=object),
        CONTACT_PROPERTIES["mql"]: _mql_flags(scores["mql"], origin).map({True: "true", False: "false"}).to_numpy(),
    })
    return key, values


def _same(held: Mapping[str, Any], row: Mapping[str, str]) -> bool:
    """Whether HubSpot already holds the row's values (numbers compared as numbers: it writes 0.12 for 0.1200)."""
    for prop in CONTACT_PROPERTIES.values():
        current = held.get(prop)
        if prop == CONTACT_PROPERTIES["probability"]:
            try:
                if abs(float(current) - float(row[prop])) > 5e-5:
                    return False
            except (TypeError, ValueError):
                return False
        elif str(current or "").strip().lower() != row[prop].lower():
            return False
    return True


def _errors(answer: Mapping[str, Any]) -> tuple[int, str]:
    """(how many inputs failed, the first message) of a 207 batch answer."""
    errors = [e for e in answer.get("errors") or [] if isinstance(e, Mapping)]
    count = answer.get("numErrors") if isinstance(answer.get("numErrors"), int) else len(answer.get("errors") or [])
    return count, str(errors[0].get("message", "")) if errors else ""


def push_contacts(scores_path: Path, client: Client, apply: bool, out: Callable[[str], None]) -> dict[str, int]:
    """Write leadcal's scores to HubSpot contacts where they differ from what HubSpot holds.

    Contacts are read first (batch/read, by hs_object_id or by email), then updated by the id
    HubSpot answered with: batch/update by e-mail is refused (an e-mail is not a unique id there)."""
    if not scores_path.exists():
        raise LeadcalError(f"{scores_path}: no such scores file (the output of `leadcal score`)")
    scores = pd.read_parquet(scores_path) if scores_path.suffix.lower() == ".parquet" else \
        pd.read_csv(scores_path, dtype=str, keep_default_na=False)
    id_column, values = contact_values(scores, scores_path)
    by_email = id_column == "email"
    properties = list(CONTACT_PROPERTIES.values())
    changed, unchanged, unknown = [], 0, []
    for start in range(0, len(values), BATCH):
        batch = values.iloc[start:start + BATCH]
        answer = client.request("POST", f"{CONTACTS}/read", {
            "inputs": [{"id": i} for i in batch["id"]], "properties": properties + (["email"] if by_email else []),
            "propertiesWithHistory": [], **({"idProperty": "email"} if by_email else {})})
        held: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for result in answer.get("results") or []:
            if not isinstance(result, Mapping) or result.get("id") is None:
                continue
            props = result.get("properties") if isinstance(result.get("properties"), Mapping) else {}
            key = str(props.get("email") or "").lower() if by_email else str(result["id"])
            held[key] = (str(result["id"]), props)
        for row in batch.to_dict("records"):
            found = held.get(row["id"])
            if found is None:
                unknown.append(row["id"])
            elif _same(found[1], row):
                unchanged += 1
            else:
                changed.append({**row, "hubspot_id": found[0]})
    out(f"~ update {len(changed)} contacts' {', '.join(properties)}; = {unchanged} unchanged; "
        f"! {len(unknown)} not in HubSpot" + (f" (e.g. {unknown[0]})" if unknown else ""))
    if apply:
        failed, first = 0, ""
        for start in range(0, len(changed), BATCH):  # every batch is sent, even after one partly fails
            inputs = [{"id": row["hubspot_id"], "properties": {p: row[p] for p in properties}}
                      for row in changed[start:start + BATCH]]
            count, message = _errors(client.request("POST", f"{CONTACTS}/update", {"inputs": inputs}))
            failed, first = failed + count, first or message
        if failed:
            raise LeadcalError(f"hubspot: {failed} of {len(changed)} contacts were not updated ({first}); the other "
                               f"{len(changed) - failed} were")
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
