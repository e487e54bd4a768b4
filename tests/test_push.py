"""`leadcal push mautic` against a local Mautic API server (tests/mautic_server.py): a real HTTP server
that implements the documented endpoints and validates every body, not a mock object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import io
from pipeline.cli import main
from pipeline.errors import LeadcalError
from pipeline.exports import generic
from pipeline.exports.client import Client
from pipeline.exports.mautic import mautic_export
from pipeline.exports.push_mautic import push_mautic
from pipeline.params import ActivityMapping, CrmMapping, Params
from tests.mautic_server import mautic  # noqa: F401 - the fixture

MAPPING = CrmMapping(activities={"demo_request": ActivityMapping(event="form.submit", ids=[3]),
                                 "pricing_page_visit": ActivityMapping(event="url.hit", page_url="https://x.example/p*"),
                                 "whitepaper_download": ActivityMapping(event="asset.download", ids=[8])})


def export_file(default_run: Params, folder: Path, threshold: int = 59, mapping: CrmMapping = MAPPING) -> Path:
    rows = generic.read_export_rows(default_run.paths.models / "exports" / "weights.json")
    payload = mautic_export(rows, {"half_life_days": 10.0}, {"threshold": threshold, "validation": {}}, mapping,
                                    default_run.signals.numeric_bins)
    path = folder / "mautic_point_actions.json"
    io.write_json(path, payload)
    return path


def client(server, password: str | None = None) -> Client:
    return Client.basic(server.url, server.username, password or server.password, sleep=lambda seconds: None)


def test_dry_run_prints_the_difference_and_sends_nothing(default_run, mautic, tmp_path) -> None:
    lines: list[str] = []
    changes = push_mautic(export_file(default_run, tmp_path), apply=False, out=lines.append, client=client(mautic))
    assert {r.method for r in mautic.requests} == {"GET"}  # the promise of a dry run
    assert not mautic.points and not mautic.segments and not mautic.triggers
    creates = [c for c in changes if c.action == "create"]
    assert {c.kind for c in creates} == {"point action", "segment", "point trigger"}
    assert "+ create point trigger 'leadcal MQL: 59 points'" in lines
    skipped = [c for c in changes if c.action == "skip"]
    assert skipped and all("ANY" in c.reason for c in skipped)  # unmapped actions would count any form
    assert lines[-1].startswith(f"dry run, nothing sent: {len(creates)} to create, 0 to update")


def test_apply_creates_then_nothing_changes_and_a_moved_threshold_updates_the_trigger(default_run, mautic, tmp_path) -> None:
    path = export_file(default_run, tmp_path)
    push_mautic(path, apply=True, out=lambda line: None, client=client(mautic))
    payload = io.read_json(path)
    mapped = [e for e in payload["point_actions"] if e["mapped"]]
    assert sorted(p["name"] for p in mautic.points.values()) == sorted(e["api"]["name"] for e in mapped)
    assert len(mautic.segments) == len(payload["segments"]) and len(mautic.triggers) == 1
    demo = next(p for p in mautic.points.values() if p["name"] == "Activity: demo_request at least once")
    assert demo["properties"] == {"forms": [3]} and demo["type"] == "form.submit"

    again = push_mautic(path, apply=False, out=lambda line: None, client=client(mautic))
    assert {c.action for c in again} <= {"unchanged", "skip"}

    moved = export_file(default_run, tmp_path, threshold=64)
    mautic.requests.clear()
    changes = push_mautic(moved, apply=True, out=lambda line: None, client=client(mautic))
    trigger = next(c for c in changes if c.kind == "point trigger")
    assert (trigger.action, trigger.changed) == ("update", ("name", "points"))
    assert len(mautic.triggers) == 1 and next(iter(mautic.triggers.values()))["points"] == 64
    assert [(r.method, r.path) for r in mautic.requests if r.method != "GET"] == [
        ("PATCH", f"/api/points/triggers/{trigger.entity_id}/edit")]


def test_include_unmapped_pushes_the_actions_without_ids(default_run, mautic, tmp_path) -> None:
    push_mautic(export_file(default_run, tmp_path), apply=True, include_unmapped=True, out=lambda line: None,
                client=client(mautic))
    blog = next(p for p in mautic.points.values() if p["name"] == "Activity: blog_read at least once")
    assert blog["type"] == "url.hit" and "page_url" not in blog["properties"]


def test_a_429_is_retried_and_a_500_too(default_run, mautic, tmp_path) -> None:
    mautic.fail_next.extend([429, 500])
    changes = push_mautic(export_file(default_run, tmp_path), apply=True, out=lambda line: None, client=client(mautic))
    assert [r.status for r in mautic.requests[:3]] == [429, 500, 200]
    assert len(mautic.points) == sum(c.kind == "point action" and c.action == "create" for c in changes)


def test_a_body_mautic_refuses_ends_with_one_line_naming_the_request(default_run, mautic, tmp_path) -> None:
    path = export_file(default_run, tmp_path)
    payload = io.read_json(path)
    payload["point_actions"][0].update(mapped=True)
    payload["point_actions"][0]["api"]["type"] = "custom"  # not a Mautic point-action type
    io.write_json(path, payload)
    with pytest.raises(LeadcalError) as caught:
        push_mautic(path, apply=True, include_unmapped=True, out=lambda line: None, client=client(mautic))
    message = str(caught.value)
    assert message.startswith("mautic refused POST /api/points/new (400): ") and "type" in message
    assert "\n" not in message


def test_wrong_credentials_end_with_one_line_that_never_shows_the_password(default_run, mautic, tmp_path) -> None:
    with pytest.raises(LeadcalError) as caught:
        push_mautic(export_file(default_run, tmp_path), apply=False, out=lambda line: None,
                    client=client(mautic, password="not-the-password-s3cret"))
    message = str(caught.value)
    assert "(401)" in message and "MAUTIC_USERNAME / MAUTIC_PASSWORD" in message
    assert "s3cret" not in message and "\n" not in message
    with pytest.raises(LeadcalError, match="needs MAUTIC_USERNAME, MAUTIC_PASSWORD in the environment"):
        push_mautic(export_file(default_run, tmp_path), apply=False, environ={"MAUTIC_URL": mautic.url})
    with pytest.raises(LeadcalError, match="without credentials in it"):
        Client.basic("https://user:pw@mautic.example", "u", "p")


def test_cli_dry_run_reads_credentials_from_the_environment(default_run, mautic, tmp_path, monkeypatch, capsys) -> None:
    project = tmp_path / "project"
    models = project / "models" / "exports"
    models.mkdir(parents=True)
    export_file(default_run, models)
    (project / "params.yaml").write_text(json.dumps({"paths": {"models": "models"}}))
    monkeypatch.setenv("MAUTIC_URL", mautic.url)
    monkeypatch.setenv("MAUTIC_USERNAME", mautic.username)
    monkeypatch.setenv("MAUTIC_PASSWORD", mautic.password)
    assert main(["--config", str(project / "params.yaml"), "push", "mautic", "--dry-run"]) == 0
    output = capsys.readouterr()
    assert "dry run, nothing sent" in output.out and mautic.password not in output.out + output.err
    assert {r.method for r in mautic.requests} == {"GET"}
    with pytest.raises(SystemExit) as usage:  # --dry-run or --apply is required: a usage error
        main(["push", "mautic"])
    assert usage.value.code == 64
