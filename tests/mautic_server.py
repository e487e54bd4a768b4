"""A local Mautic REST API server for tests: a real HTTP server, not a mock object.

It implements the documented Mautic 4/5 endpoints `leadcal push mautic` calls (docs/rest_api/point_actions.rst,
point_triggers.rst, segments.rst): list, create and edit of point actions, point triggers and segments, with
Basic auth on every request, Mautic's error body `{"errors": [{"code", "message", "details", "type"}]}`, and every
create/edit body validated against the schemas of tests/test_mautic_payloads.py (what Mautic refuses, it refuses).
Every request is recorded (method, path, query, JSON body, headers, answered status).

    from tests.mautic_server import mautic  # noqa: F401 - the fixture

    def test_x(mautic):
        ...  # mautic.url, mautic.username, mautic.password, mautic.points, mautic.requests, mautic.fail_next
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import re
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.local_http import LocalHttpServer, Recorded, recorded
from tests.test_mautic_payloads import POINT_ACTION, SEGMENT, TRIGGER

# kind -> (list path, list key, single key, schema); the edit path is "<list path>/{id}/edit", create "<list path>/new"
KINDS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "points": ("/api/points", "points", "point", POINT_ACTION),
    "triggers": ("/api/points/triggers", "triggers", "trigger", TRIGGER),
    "segments": ("/api/segments", "lists", "list", SEGMENT),
}
MESSAGES = {400: "Bad request.", 401: "API authorization denied.", 403: "You do not have access to the requested area/action.",
            404: "Item was not found.", 429: "API rate limit exceeded.",
            500: "Looks like I encountered an error (error #500). If I do it again, please report me to the system administrator!",
            502: "Bad gateway.", 503: "Service unavailable.", 504: "Gateway timeout."}


def error_body(status: int, message: str | None = None, details: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Mautic's error body."""
    return {"errors": [{"code": status, "message": message or MESSAGES.get(status, "Error."),
                        "details": details or {}, "type": None}]}


def _field(error: jsonschema.ValidationError) -> str:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        path += [next((name for name in missing if error.message.startswith(repr(name))), *missing[:1])] if missing else []
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(name for name in error.instance if name not in known)
        path += extra[:1]
    return ".".join(path) or "body"


def validation_errors(entity: Any, schema: dict[str, Any]) -> dict[str, list[str]]:
    """field -> reasons, empty when the entity is valid."""
    details: dict[str, list[str]] = {}
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(entity), key=lambda e: list(map(str, e.path))):
        details.setdefault(_field(error), []).append(error.message)
    return details


class MauticServer(LocalHttpServer):
    """Mautic's REST API on http://127.0.0.1:<free port>, in a background thread; state guarded by a lock."""

    thread_name = "mautic-server"

    def __init__(self, username: str = "leadcal-api", password: str = "mautic-test-password") -> None:
        self.username, self.password = username, password
        self.requests: list[Recorded] = []
        self.points: dict[int, dict[str, Any]] = {}
        self.triggers: dict[int, dict[str, Any]] = {}
        self.segments: dict[int, dict[str, Any]] = {}
        self.fail_next: list[int] = []  # statuses answered, in order, before any normal handling (auth included)
        self.lock = threading.RLock()
        self._next_id = {"points": 1, "triggers": 1, "segments": 1}
        super().__init__()

    def store(self, kind: str) -> dict[int, dict[str, Any]]:
        return {"points": self.points, "triggers": self.triggers, "segments": self.segments}[kind]

    # -- request handling (called from the handler threads) --------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        record, parsed = recorded(method, target, headers, raw)
        path, query, body = record.path, record.query, record.json
        with self.lock:
            self.requests.append(record)
            if self.fail_next:
                status = self.fail_next.pop(0)
                extra = {"Retry-After": "0"} if status == 429 else {}
                record.status = status
                return status, error_body(status), extra
            status, answer = self._route(method, path, query, headers, raw, body, parsed)
            record.status = status
            return status, answer, {"WWW-Authenticate": 'Basic realm="Mautic"'} if status == 401 else {}

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, f"{self.username}:{self.password}".encode())

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes | None,
               body: Any, parsed: bool) -> tuple[int, dict[str, Any]]:
        if not self._authorized(headers):
            return 401, error_body(401)
        for kind, (base, list_key, single_key, schema) in KINDS.items():
            if path in (base, base + "/") and method == "GET":
                return 200, self._list(kind, list_key, query)
            if path == base + "/new" and method == "POST":
                if not raw or not parsed:
                    return 400, error_body(400, "Request body must be JSON.")
                return self._create(kind, single_key, schema, body)
            match = re.fullmatch(re.escape(base) + r"/(\d+)/edit", path)
            if match and method == "PATCH":
                if not raw or not parsed:
                    return 400, error_body(400, "Request body must be JSON.")
                return self._edit(kind, single_key, schema, int(match.group(1)), body)
        return 404, error_body(404)

    def _list(self, kind: str, list_key: str, query: dict[str, str]) -> dict[str, Any]:
        entities = [self.store(kind)[key] for key in sorted(self.store(kind))]
        search = query.get("search", "").strip().lower()
        if search:
            entities = [e for e in entities if search in str(e.get("name", "")).lower()]
        start = _int(query.get("start"), 0)
        limit = _int(query.get("limit"), 0)
        page = entities[start:start + limit] if limit > 0 else entities[start:]
        return {"total": len(entities), list_key: copy.deepcopy(page)}

    def _create(self, kind: str, single_key: str, schema: dict[str, Any], body: Any) -> tuple[int, dict[str, Any]]:
        return self._save(kind, single_key, schema, self._next_id[kind], body, 201)

    def _edit(self, kind: str, single_key: str, schema: dict[str, Any], entity_id: int, body: Any) -> tuple[int, dict[str, Any]]:
        current = self.store(kind).get(entity_id)
        if current is None:
            return 404, error_body(404)
        if not isinstance(body, dict):
            return self._save(kind, single_key, schema, entity_id, body, 200)
        merged = {k: v for k, v in current.items() if k != "id"}
        merged.update({k: v for k, v in body.items() if k != "id"})
        return self._save(kind, single_key, schema, entity_id, merged, 200)

    def _save(self, kind: str, single_key: str, schema: dict[str, Any], entity_id: int, entity: Any,
              status: int) -> tuple[int, dict[str, Any]]:
        details = validation_errors(entity, schema)
        if details:
            message = "; ".join(f"{name}: {reason}" for name, reasons in details.items() for reason in reasons)
            return 400, error_body(400, message, details)
        stored = {**copy.deepcopy(entity), "id": entity_id}
        self.store(kind)[entity_id] = stored
        self._next_id[kind] = max(self._next_id[kind], entity_id + 1)
        return status, {single_key: copy.deepcopy(stored)}


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None and value != "" else default
    except ValueError:
        return default


@pytest.fixture
def mautic() -> Iterator[MauticServer]:
    """A started local Mautic API server, stopped after the test."""
    with MauticServer() as server:
        yield server
