"""JSON Schemas of HubSpot's Lead Scoring API (beta 2026-09) request bodies, written from its OpenAPI spec.

Source: the spec HubSpot publishes (repository HubSpot/HubSpot-public-api-spec-collection,
PublicApiSpecs/Marketing/Lead Scoring/Rollouts/320952/2026-09-beta/leadScoring.json):
PublicDraftCreateRequest, PublicDraftUpdateRequest, PublicScoreGroupConfiguration(Egg),
PublicScoreRuleConfiguration(Egg), PublicGroupDecayConfiguration and the calculators and
property operations a leadcal configuration uses (CONSTANT, CONDITIONAL, MULTI_UE; SINGLE /
COMPOSITE conditions; NUMBER, ENUMERATION, MULTISTRING, ALL_PROPERTY, ROLLING_DATE_RANGE).
Required fields, types and enums are the spec's. Two things are stricter than the spec:
- the spec leaves `operator` a free string; the allowed operators here are the ones HubSpot's
  Lists API spec (PublicApiSpecs/CRM/Lists/.../lists.json) lists for the same operation
  schemas, which the Lead Scoring spec shares;
- unknown fields are refused (additionalProperties false), so a misspelt field fails here
  rather than being silently ignored.
A body valid here is therefore valid under the spec. Calculators leadcal never writes (MATCH,
MULTI, segment membership, association roll-ups) are left out, so they are refused here.
"""

from __future__ import annotations

from typing import Any

NUMBER_OPERATORS = ["IS_EQUAL_TO", "IS_NOT_EQUAL_TO", "IS_GREATER_THAN", "IS_GREATER_THAN_OR_EQUAL_TO", "IS_LESS_THAN",
                    "IS_LESS_THAN_OR_EQUAL_TO", "HAS_EVER_BEEN_EQUAL_TO", "HAS_NEVER_BEEN_EQUAL_TO"]
ENUMERATION_OPERATORS = ["IS_ANY_OF", "IS_NONE_OF", "IS_EXACTLY", "IS_NOT_EXACTLY", "CONTAINS_ALL",
                         "DOES_NOT_CONTAIN_ALL", "HAS_EVER_BEEN_ANY_OF", "HAS_NEVER_BEEN_ANY_OF",
                         "HAS_EVER_BEEN_EXACTLY", "HAS_NEVER_BEEN_EXACTLY", "HAS_EVER_CONTAINED_ALL",
                         "HAS_NEVER_CONTAINED_ALL"]
MULTISTRING_OPERATORS = ["IS_EQUAL_TO", "IS_NOT_EQUAL_TO", "CONTAINS", "CONTAINS_EXACTLY", "DOES_NOT_CONTAIN",
                         "DOES_NOT_CONTAIN_EXACTLY", "STARTS_WITH", "ENDS_WITH"]
ALL_PROPERTY_OPERATORS = ["IS_KNOWN", "IS_UNKNOWN"]
ROLLING_OPERATORS = ["IS_LESS_THAN_X_DAYS_AGO", "IS_MORE_THAN_X_DAYS_AGO", "IS_LESS_THAN_X_DAYS_FROM_NOW",
                     "IS_MORE_THAN_X_DAYS_FROM_NOW"]
INT32 = {"type": "integer", "minimum": -2 ** 31, "maximum": 2 ** 31 - 1}
CATEGORIES = {"type": "string", "enum": ["FIT", "INTENT"]}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False}


def _operation(kind: str, operators: list[str], **fields: Any) -> dict[str, Any]:
    required = ["includeObjectsWithNoValueSet", "operationType", "operator", *fields]
    return _object(required, {"includeObjectsWithNoValueSet": {"type": "boolean"}, "operationType": {"const": kind},
                              "operator": {"enum": operators}, **fields})


STRINGS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
DEFS: dict[str, Any] = {
    "operation": {"oneOf": [
        _operation("NUMBER", NUMBER_OPERATORS, value={"type": "number"}),
        _operation("ENUMERATION", ENUMERATION_OPERATORS, values=STRINGS),
        _operation("MULTISTRING", MULTISTRING_OPERATORS, values=STRINGS),
        _operation("ALL_PROPERTY", ALL_PROPERTY_OPERATORS),
        _operation("ROLLING_DATE_RANGE", ROLLING_OPERATORS, numberOfDays={**INT32, "minimum": 1},
                   requiresTimeZoneConversion={"type": "boolean"}),
    ]},
    "single": _object(["operation", "property", "type"], {
        "type": {"const": "SINGLE"}, "property": {"type": "string", "minLength": 1},
        "operation": {"$ref": "#/$defs/operation"}}),
    "composite": _object(["conditions", "operator", "type"], {
        "type": {"const": "COMPOSITE"}, "operator": {"enum": ["AND"]},
        "conditions": {"type": "array", "minItems": 1,
                       "items": {"oneOf": [{"$ref": "#/$defs/single"}, {"$ref": "#/$defs/composite"}]}}}),
    "constant": _object(["type", "value"], {"type": {"const": "CONSTANT"}, "value": {"type": "number"}}),
    "conditional": _object(["type", "value", "whereCondition"], {
        "type": {"const": "CONDITIONAL"}, "value": {"type": "number"}, "whereCondition": {"$ref": "#/$defs/composite"}}),
    "frequency": _object(["ranges", "type"], {"type": {"const": "BETWEEN"}, "ranges": {"type": "array", "minItems": 1, "items": _object(
        ["from", "type", "value"], {"from": {**INT32, "minimum": 0}, "to": INT32, "type": {"enum": ["AT_LEAST", "BETWEEN", "EXACTLY"]},
                                    "value": {"type": "number"}})}}),
    "event": _object(["eventTypeId", "recordCalculation"], {
        "eventTypeId": {"type": "string", "minLength": 1},
        "recordCalculation": {"oneOf": [{"$ref": "#/$defs/constant"}, {"$ref": "#/$defs/conditional"}]},
        "eventFrequencyCriteria": {"$ref": "#/$defs/frequency"},
        "eventTimeframe": _object(["eventFilterOperation"], {"eventFilterOperation": {"$ref": "#/$defs/operation"}})}),
    "multi_ue": _object(["eventCalculators", "type"], {
        "type": {"const": "MULTI_UE"}, "eventCalculators": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/event"}}}),
    "configuration": _object(["calculation"], {"calculation": {"oneOf": [
        {"$ref": "#/$defs/constant"}, {"$ref": "#/$defs/conditional"}, {"$ref": "#/$defs/multi_ue"}]}}),
    "decay": _object(["decayIntervalDays", "percentToDecayPerInterval"], {
        "decayIntervalDays": {**INT32, "minimum": 1}, "percentToDecayPerInterval": {**INT32, "minimum": 1, "maximum": 100}}),
}
_RULE = {"configuration": {"$ref": "#/$defs/configuration"}, "enabled": {"type": "boolean"},
         "maximumValue": {"type": "number"}, "minimumValue": {"type": "number"}}
_GROUP = {"groupCategory": CATEGORIES, "groupName": {"type": "string", "minLength": 1}, "groupDecay": {"$ref": "#/$defs/decay"},
          "maxValue": {"type": "number"}, "minValue": {"type": "number"}}
DEFS["rule_egg"] = _object(["configuration", "enabled"], _RULE)
DEFS["rule"] = _object(["configuration", "enabled", "id"], {**_RULE, "id": {"type": "string", "minLength": 1}})
DEFS["group_egg"] = _object(["groupCategory", "groupName", "ruleConfigurations"], {
    **_GROUP, "ruleConfigurations": {"type": "array", "items": {"$ref": "#/$defs/rule_egg"}}})
DEFS["group"] = _object(["groupCategory", "groupName", "id", "ruleConfigurations"], {
    **_GROUP, "id": {"type": "string", "minLength": 1}, "ruleConfigurations": {"type": "array", "items": {"$ref": "#/$defs/rule"}}})
_SCORE = {"name": {"type": "string", "minLength": 1}, "objectTypeId": {"type": "string", "minLength": 1},
          "allowedGroupTypes": {"type": "array", "items": CATEGORIES, "minItems": 1}, "maxScorePerCategory": INT32}

# POST /marketing/lead-scoring/2026-09-beta/scores
DRAFT_CREATE = {"$defs": DEFS, **_object(["allowedGroupTypes", "groupConfigs", "maxScorePerCategory", "name", "objectTypeId"], {
    **_SCORE, "groupConfigs": {"type": "array", "items": {"$ref": "#/$defs/group_egg"}}})}
# PUT /marketing/lead-scoring/2026-09-beta/scores/{scoreId}/draft: groups and rules carry their ids
DRAFT_UPDATE = {"$defs": DEFS, **_object(["allowedGroupTypes", "groupConfigs", "name", "objectTypeId"], {
    **_SCORE, "groupConfigs": {"type": "array", "items": {"$ref": "#/$defs/group"}},
    "filterConfiguration": _object(["listFilterType", "segmentIds"], {
        "listFilterType": {"enum": ["EXCLUDES", "INCLUDES"]}, "segmentIds": {"type": "array", "items": INT32}}),
    "outputConfiguration": _object(["outputs"], {"outputs": {"type": "array", "items": _object(["id", "outputType"], {
        "id": {"type": "string"}, "outputType": {"enum": ["SCORE", "THRESHOLD", "MATRIX"]},
        "boundaries": {"type": ["array", "object"]}, "internalPropertyName": {"type": "string"},
        "propertyDescription": {"type": "string"}, "propertyGroup": {"type": "string"},
        "propertyLabel": {"type": "string"}})}})})}

# POST /crm/v3/objects/contacts/batch/update (BatchInputSimplePublicObjectBatchInput) and batch/read
CONTACTS_UPDATE = _object(["inputs"], {"inputs": {"type": "array", "minItems": 1, "maxItems": 100, "items": _object(
    ["id", "properties"], {"id": {"type": "string", "minLength": 1}, "idProperty": {"type": "string"},
                           "objectWriteTraceId": {"type": "string"},
                           "properties": {"type": "object", "additionalProperties": {"type": "string"}}})}})
CONTACTS_READ = _object(["inputs", "properties", "propertiesWithHistory"], {
    "inputs": {"type": "array", "minItems": 1, "maxItems": 100, "items": _object(["id"], {"id": {"type": "string"}})},
    "properties": {"type": "array", "items": {"type": "string"}}, "propertiesWithHistory": {"type": "array"},
    "idProperty": {"type": "string"}})
