"""The Mautic export's request bodies validate against Mautic's REST API rules.

The schemas below are written from Mautic's own validators and form types (mautic/mautic 4/5:
PointBundle Entity/Point.php and Trigger.php, the point-action form types of the Form, Asset,
Email and Page bundles, LeadBundle's segment filters) and its REST docs (docs/rest_api/
point_actions.rst, point_triggers.rst, segments.rst): required fields, the core point-action
types with the properties each takes, filter glue, objects, types and operators.
"""

from __future__ import annotations

import jsonschema
import pytest

from pipeline import io
from pipeline.exports import generic, mautic
from pipeline.params import MAUTIC_POINT_TYPES, ActivityMapping, CrmMapping, Params

IDS = {"type": "array", "items": {"type": ["integer", "string"]}}
PROPERTIES_BY_TYPE = {
    "form.submit": {"forms": IDS}, "asset.download": {"assets": IDS}, "email.open": {"emails": IDS},
    "email.send": {"emails": IDS}, "page.hit": {"pages": IDS},
    "url.hit": {"page_url": {"type": "string", "minLength": 1}, "page_hits": {"type": "integer", "minimum": 1},
                "returns_within": {}, "returns_after": {}, "accumulative_time": {}, "first_time": {"type": "boolean"}},
}
POINT_ACTION = {
    "type": "object",
    "required": ["name", "type", "delta"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 191}, "description": {"type": "string"},
        "type": {"enum": list(MAUTIC_POINT_TYPES)}, "delta": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
        "repeatable": {"type": "boolean"}, "isPublished": {"type": "boolean"}, "properties": {"type": "object"},
    },
    "allOf": [{"if": {"properties": {"type": {"const": t}}},
               "then": {"properties": {"properties": {"type": "object", "properties": p, "additionalProperties": False}}}}
              for t, p in PROPERTIES_BY_TYPE.items()],
}
OPERATORS = {"text": ["=", "!=", "like", "!like", "empty", "!empty", "startsWith", "endsWith", "contains"],
             "number": ["=", "!=", "gt", "gte", "lt", "lte", "empty", "!empty"]}
FILTER = {
    "type": "object",
    "required": ["glue", "object", "field", "type", "operator", "properties"],
    "additionalProperties": False,
    "properties": {"glue": {"enum": ["and", "or"]}, "object": {"enum": ["lead", "company", "behaviors"]},
                   "field": {"type": "string", "minLength": 1}, "type": {"enum": list(OPERATORS)},
                   "operator": {"type": "string"},
                   "properties": {"type": "object", "required": ["filter"],
                                  "properties": {"filter": {"type": ["string", "number", "null"]}}}},
    "allOf": [{"if": {"properties": {"type": {"const": t}}}, "then": {"properties": {"operator": {"enum": ops}}}}
              for t, ops in OPERATORS.items()],
}
SEGMENT = {"type": "object", "required": ["name", "filters"], "additionalProperties": False,
           "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 191}, "isPublished": {"type": "boolean"},
                          "filters": {"type": "array", "minItems": 1, "items": FILTER}}}
TRIGGER = {"type": "object", "required": ["name"], "additionalProperties": False,
           "properties": {"name": {"type": "string", "minLength": 1}, "description": {"type": "string"},
                          "points": {"type": "integer"}, "color": {"type": "string", "pattern": "^[0-9a-f]{6}$"},
                          "isPublished": {"type": "boolean"}, "triggerExistingLeads": {"type": "boolean"},
                          "events": {"type": "array"}}}


def validate(payload: dict) -> None:
    for entry in payload["point_actions"]:
        jsonschema.validate(entry["api"], POINT_ACTION)
        assert entry["delta"] == entry["api"]["delta"]
    for entry in payload["segments"]:
        jsonschema.validate(entry["api"], SEGMENT)
    if payload["point_trigger"] is not None:
        jsonschema.validate(payload["point_trigger"]["api"], TRIGGER)


def test_the_default_runs_mautic_file_validates(default_run: Params) -> None:
    payload = io.read_json(default_run.paths.models / "exports" / "mautic_point_actions.json")
    validate(payload)
    assert payload["point_actions"] and payload["segments"] and payload["point_trigger"] is not None
    # every signal is in exactly one of the three lists
    signals = [e["leadcal_signal"] for key in ("point_actions", "segments", "by_campaign") for e in payload[key]]
    assert len(signals) == len(set(signals)) == len(generic.read_export_rows(default_run.paths.models / "exports" / "weights.json"))


def test_a_mapped_export_validates_and_an_invalid_body_is_caught(default_run: Params) -> None:
    rows = generic.read_export_rows(default_run.paths.models / "exports" / "weights.json")
    mapping = CrmMapping(activities={"demo_request": ActivityMapping(event="form.submit", ids=[3]),
                                     "pricing_page_visit": ActivityMapping(event="url.hit", page_url="https://x.example/p*"),
                                     "email_open": ActivityMapping(event="email.open", ids=[12])},
                         properties={"industry": "sector"})
    payload = mautic.mautic_export(rows, {"half_life_days": 10.0}, {"threshold": 59, "validation": {}}, mapping,
                                    default_run.signals.numeric_bins)
    validate(payload)
    demo = next(e for e in payload["point_actions"] if e["leadcal_signal"] == "demo_request")["api"]
    # the schema is not a rubber stamp: what Mautic refuses, it refuses
    for broken in ({**demo, "type": "custom"}, {**demo, "delta": 1.5}, {**demo, "name": ""},
                   {**demo, "properties": {"forms": [3], "leadcal_activity": "x"}}, {**demo, "field": "fit_score"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, POINT_ACTION)
    segment = payload["segments"][0]["api"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**segment, "filters": [{**segment["filters"][0], "glue": None}]}, SEGMENT)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**segment, "filters": [{"field": "industry", "operator": "=", "filter": "x"}]}, SEGMENT)
