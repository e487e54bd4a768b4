"""A local HubSpot API server for tests: a real HTTP server, not a mock object.

It implements what `leadcal push hubspot` calls, as HubSpot documents it:
- Lead Scoring API (beta 2026-09): GET/POST /scores, GET/PUT /scores/{id}/draft,
  POST /scores/{id}/draft/publish; a created score is a draft until published; every
  create and draft body is validated against tests/hubspot_schema.py (what the spec refuses,
  it refuses, with HubSpot's error body {message, correlationId, category, errors[{message, in}]}).
- CRM contacts: POST /crm/v3/objects/contacts/batch/read and batch/update (by id or by a
  unique idProperty such as email), 207 with `errors` for contacts it does not hold, 400 for
  properties that do not exist.
Bearer-token auth on every request; `fail_next` answers the next requests with a status
(429 with HubSpot's rate-limit body and policy, 5xx). Every request is recorded.

    from tests.hubspot_server import hubspot  # noqa: F401 - the fixture
"""

from __future__ import annotations

import copy
import hmac
import itertools
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.hubspot_schema import CONTACTS_READ, CONTACTS_UPDATE, DRAFT_CREATE, DRAFT_UPDATE
from tests.local_http import LocalHttpServer, Recorded, recorded
from tests.mautic_server import validation_errors

SCORES = "/marketing/lead-scoring/2026-09-beta/scores"
CONTACTS = "/crm/v3/objects/contacts/batch"
TOKEN = "pat-na1-00000000-test-token-s3cret"
CONTACT_PROPERTIES = {"email", "firstname", "hs_object_id", "leadcal_probability", "leadcal_grade", "leadcal_mql"}


def error_body(category: str, message: str, errors: list[dict[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
    """HubSpot's shared Error schema."""
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category,
            **({"errors": errors} if errors else {}), **extra}


def rate_limited(policy: str) -> dict[str, Any]:
    limit = "daily" if policy == "DAILY" else "secondly"
    return error_body("RATE_LIMITS", f"You have reached your {limit} limit.", errorType="RATE_LIMIT", policyName=policy)


@dataclass
class Failure:
    """An answer forced on the next request (of `method`, if given): a status, for 429 the rate-limit
    policy, or a text body that is not JSON (a proxy's error page)."""

    status: int
    policy: str = "TEN_SECONDLY_ROLLING"
    method: str | None = None
    text: str | None = None


class HubSpotServer(LocalHttpServer):
    """HubSpot's API on http://127.0.0.1:<free port>, in a background thread; state guarded by a lock."""

    thread_name = "hubspot-server"

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[Recorded] = []
        self.scores: dict[str, dict[str, Any]] = {}  # id -> {"name", "status", "draft", "published"}
        self.contacts: dict[str, dict[str, str]] = {}  # id -> properties
        self.fail_next: list[Failure] = []
        self.deleted_before_update: set[str] = set()  # contacts that vanish between a read and an update
        self.lock = threading.RLock()
        self._ids = itertools.count(1001)
        super().__init__()

    def add_contact(self, email: str, **properties: str) -> str:
        contact_id = str(next(self._ids))
        self.contacts[contact_id] = {"email": email, "hs_object_id": contact_id, "createdate": "2026-01-01T00:00:00Z",
                                     "lastmodifieddate": "2026-11-30T00:00:00Z", **_stored(properties)}
        return contact_id

    def writes(self) -> list[Recorded]:
        """Requests that change something (batch/read is a POST that only reads)."""
        return [r for r in self.requests if r.method != "GET" and not r.path.endswith("/batch/read")]

    # -- request handling ------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str],
               raw: bytes | None) -> tuple[int, Any, dict[str, str]]:
        record, parsed = recorded(method, target, headers, raw)
        path, query, body = record.path, record.query, record.json
        with self.lock:
            self.requests.append(record)
            record.status, answer = self._answer(method, path, query, headers, raw, body, parsed)
            created = record.status == 201 and isinstance(answer, dict) and "id" in answer
            return record.status, answer, {"Location": f"{SCORES}/{answer['id']}"} if created else {}

    def _answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes | None,
                body: Any, parsed: bool) -> tuple[int, Any]:
        failure = next((f for f in self.fail_next if f.method in (None, method)), None)
        if failure is not None:
            self.fail_next.remove(failure)
            if failure.text is not None:
                return failure.status, failure.text
            if failure.status == 429:
                return 429, rate_limited(failure.policy)
            return failure.status, error_body("INTERNAL_ERROR", "internal error")
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = value.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(token.encode(), self.token.encode()):
            return 401, error_body("INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports "
                                                             "OAuth 2.0 authentication.")
        if raw and not parsed:
            return 400, error_body("VALIDATION_ERROR", "Invalid input JSON")
        if path == SCORES and method == "GET":
            return 200, self._list(query)
        if path == SCORES and method == "POST":
            return self._create(body)
        match = re.fullmatch(re.escape(SCORES) + r"/(\d+)/draft(/publish)?", path)
        if match:
            score = self.scores.get(match.group(1))
            if score is None:
                return 404, error_body("OBJECT_NOT_FOUND", f"score {match.group(1)} does not exist")
            if match.group(2) and method == "POST":
                score["published"], score["status"] = copy.deepcopy(score["draft"]), "published"
                return 200, self._configuration(match.group(1), score["published"], "published")
            if method == "GET":
                return 200, self._configuration(match.group(1), score["draft"], "draft")
            if method == "PUT":
                return self._update(match.group(1), score, body)
        if path == f"{CONTACTS}/read" and method == "POST":
            return self._read_contacts(body)
        if path == f"{CONTACTS}/update" and method == "POST":
            return self._update_contacts(body)
        return 404, error_body("OBJECT_NOT_FOUND", f"no route {method} {path}")

    @staticmethod
    def _invalid(body: Any, schema: dict[str, Any]) -> tuple[int, Any] | None:
        details = validation_errors(body, schema)
        if not details:
            return None
        errors = [{"message": reason, "in": name} for name, reasons in details.items() for reason in reasons]
        return 400, error_body("VALIDATION_ERROR", "Invalid input", errors)

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        ids = sorted(self.scores, key=int)
        start = int(query.get("after") or 0)
        limit = int(query.get("limit") or 10)
        page = ids[start:start + limit]
        answer: dict[str, Any] = {"results": [{"id": i, "name": self.scores[i]["name"], "scoreType": "COMBINED",
                                               "scoredObjectTypeId": "0-1",
                                               "lastConfigurationChangeTimestamp": "2026-12-01T00:00:00Z"} for i in page]}
        if start + limit < len(ids):
            answer["paging"] = {"next": {"after": str(start + limit)}}
        return answer

    def _with_ids(self, body: dict[str, Any]) -> dict[str, Any]:
        """The draft as HubSpot stores it: every group and rule with an id (kept when the body gives one)."""
        stored = copy.deepcopy(body)
        for group in stored["groupConfigs"]:
            group.setdefault("id", str(uuid.uuid4()))
            for rule in group["ruleConfigurations"]:
                rule.setdefault("id", str(uuid.uuid4()))
        return stored

    def _create(self, body: Any) -> tuple[int, Any]:
        refused = self._invalid(body, DRAFT_CREATE)
        if refused:
            return refused
        score_id = str(next(self._ids))
        self.scores[score_id] = {"name": body["name"], "status": "draft", "draft": self._with_ids(body), "published": None}
        return 201, self._configuration(score_id, self.scores[score_id]["draft"], "draft")

    def _update(self, score_id: str, score: dict[str, Any], body: Any) -> tuple[int, Any]:
        refused = self._invalid(body, DRAFT_UPDATE)
        if refused:
            return refused
        score["draft"], score["name"] = self._with_ids(body), body["name"]
        return 200, self._configuration(score_id, score["draft"], "draft")

    @staticmethod
    def _configuration(score_id: str, config: dict[str, Any], status: str) -> dict[str, Any]:
        return {**copy.deepcopy(config), "id": score_id, "scoreStatus": status, "scoreType": "COMBINED",
                "maxScore": config.get("maxScorePerCategory"), "createdAt": "2026-12-01T00:00:00Z"}

    def _find(self, key: str, id_property: str | None) -> str | None:
        if not id_property:
            return key if key in self.contacts else None
        return next((i for i, p in self.contacts.items() if str(p.get(id_property, "")).lower() == key.lower()), None)

    def _read_contacts(self, body: Any) -> tuple[int, Any]:
        refused = self._invalid(body, CONTACTS_READ)
        if refused:
            return refused
        results, errors = [], []
        for item in body["inputs"]:
            found = self._find(item["id"], body.get("idProperty"))
            if found is None:
                errors.append(item["id"])
                continue
            props = self.contacts[found]
            # only what was asked, and the three HubSpot always adds (not the idProperty: ask for it)
            wanted = set(body["properties"]) | {"hs_object_id", "createdate", "lastmodifieddate"}
            results.append({"id": found, "properties": {p: props.get(p) for p in sorted(wanted)}, "archived": False,
                            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-12-01T00:00:00Z"})
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": "2026-12-01T00:00:00Z",
                                  "completedAt": "2026-12-01T00:00:01Z"}
        if errors:
            answer.update(numErrors=len(errors), errors=[{"status": "error", "category": "OBJECT_NOT_FOUND",
                                                          "message": "Could not get some CONTACT objects, they may be "
                                                                     "deleted or not exist.",
                                                          "context": {"ids": errors}, "errors": [], "links": {}}])
            return 207, answer
        return 200, answer

    def _update_contacts(self, body: Any) -> tuple[int, Any]:
        refused = self._invalid(body, CONTACTS_UPDATE)
        if refused:
            return refused
        by_email = sorted({item["idProperty"] for item in body["inputs"] if item.get("idProperty")} - {"hs_object_id"})
        if by_email:  # HubSpot updates by a unique property only; e-mail is not one there
            return 400, error_body("VALIDATION_ERROR", f"{by_email[0]} is a non-unique 0-1 property",
                                   [{"message": f"{by_email[0]} is not a unique property", "in": "idProperty"}])
        unknown = sorted({p for item in body["inputs"] for p in item["properties"]} - CONTACT_PROPERTIES)
        if unknown:
            return 400, error_body("VALIDATION_ERROR", "Property values were not valid",
                                   [{"message": f'Property "{p}" does not exist', "in": p} for p in unknown])
        results, missing = [], []
        for item in body["inputs"]:
            found = self._find(item["id"], item.get("idProperty"))
            if found is None or found in self.deleted_before_update:
                missing.append(item["id"])
                continue
            self.contacts[found].update(_stored(item["properties"]))
            results.append({"id": found, "properties": dict(self.contacts[found]), "archived": False,
                            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-12-01T00:00:00Z"})
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": "2026-12-01T00:00:00Z",
                                  "completedAt": "2026-12-01T00:00:01Z"}
        if missing:
            answer.update(numErrors=len(missing), errors=[{"status": "error", "category": "OBJECT_NOT_FOUND",
                                                           "message": f"Object not found. objectId are usually numeric. "
                                                                      f"ids: {', '.join(missing)}",
                                                           "context": {"ids": missing}, "errors": [], "links": {}}])
            return 207, answer
        return 200, answer


def _stored(properties: dict[str, str]) -> dict[str, str]:
    """Values as HubSpot stores and returns them: a number property loses trailing zeros (0.1200 -> 0.12)."""
    stored = dict(properties)
    if stored.get("leadcal_probability"):
        stored["leadcal_probability"] = f"{float(stored['leadcal_probability']):g}"
    return stored


@pytest.fixture
def hubspot() -> Iterator[HubSpotServer]:
    """A started local HubSpot API server, stopped after the test."""
    with HubSpotServer() as server:
        yield server
