"""`leadcal push hubspot` against a local HubSpot API server (tests/hubspot_server.py): a real HTTP
server implementing the Lead Scoring and CRM batch endpoints and validating every body."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import io
from pipeline.cli import main
from pipeline.errors import LeadcalError
from pipeline.exports import generic, hubspot_api
from pipeline.exports.client import Client
from pipeline.exports.push_hubspot import push_contacts, push_hubspot
from pipeline.params import ActivityMapping, CrmMapping, Params
from tests.hubspot_server import SCORES, TOKEN, Failure, hubspot  # noqa: F401 - the fixture

MAPPING = CrmMapping(properties={"industry": "industry", "company_size": "numberofemployees"},
                     activities={"demo_request": ActivityMapping(event_type_id="4-1639801"),
                                 "pricing_page_visit": ActivityMapping(event_type_id="4-96000")})


def export_file(default_run: Params, folder: Path, mapping: CrmMapping = MAPPING, bump: int = 0) -> Path:
    """The default run's HubSpot configuration with `mapping` (and every points value moved by `bump`)."""
    rows = generic.read_export_rows(default_run.paths.models / "exports" / "weights.json")
    rows = [{**r, "points": int(r["points"]) + bump} for r in rows]
    settings = io.read_json(default_run.paths.models / "exports" / "hubspot_score_settings.json")
    header = io.read_json(default_run.paths.models / "published" / "weights.json")
    payload = hubspot_api.score_configuration(rows, header, settings["points_range"], {"threshold": 59}, mapping)
    path = folder / "hubspot_score_configuration.json"
    io.write_json(path, payload)
    return path


def client(server, token: str = TOKEN, sleeps: list[float] | None = None) -> Client:
    return Client.bearer(server.url, token, sleep=(sleeps.append if sleeps is not None else lambda seconds: None))


def test_dry_run_prints_the_plan_and_sends_nothing(default_run, hubspot, tmp_path) -> None:
    lines: list[str] = []
    push_hubspot(export_file(default_run, tmp_path), apply=False, out=lines.append, client=client(hubspot))
    assert {r.method for r in hubspot.requests} == {"GET"} and not hubspot.scores  # the promise of a dry run
    assert lines[0] == "+ create score 'leadcal lead score' as a draft (4 groups, 16 rules)"
    assert "+ create group 'industry' (8 rules)" in lines
    skipped = [line for line in lines if line.startswith("! skip")]
    assert any("rules in group 'country'" in line for line in skipped)  # country is not mapped
    assert lines[-1] == "dry run, nothing sent: 5 group or score changes"


def test_apply_saves_a_draft_publishes_only_when_asked_and_updates_it_in_place(default_run, hubspot, tmp_path) -> None:
    path = export_file(default_run, tmp_path)
    lines: list[str] = []
    push_hubspot(path, apply=True, out=lines.append, client=client(hubspot))
    (score_id, score), = hubspot.scores.items()
    assert score["status"] == "draft" and score["published"] is None  # no --publish: nothing goes live
    assert "not published" in lines[-1]
    group_ids = {g["groupName"]: g["id"] for g in score["draft"]["groupConfigs"]}

    lines.clear()
    push_hubspot(path, apply=False, out=lines.append, client=client(hubspot))
    assert all(line.startswith(("= ", "! ")) for line in lines[:-1])  # nothing to change

    moved = export_file(default_run, tmp_path, bump=1)
    by_hand = copy.deepcopy(score["draft"]["groupConfigs"][0])
    score["draft"]["groupConfigs"].append({**by_hand, "groupName": "added by hand", "id": "hs-manual"})
    lines.clear()
    before = len(hubspot.requests)
    push_hubspot(moved, apply=True, publish=True, out=lines.append, client=client(hubspot))
    assert "~ update group 'industry': 8 of 8 rules" in lines
    assert "- remove group 'added by hand' (not in leadcal's points table)" in lines
    methods = [(r.method, r.path) for r in hubspot.requests[before:]]
    assert ("PUT", f"{SCORES}/{score_id}/draft") in methods and ("POST", f"{SCORES}/{score_id}/draft/publish") in methods
    assert [m for m, _ in methods].count("POST") == 1  # updated in place, no second score
    assert score["status"] == "published" and score["published"] == score["draft"]
    assert {g["groupName"]: g["id"] for g in score["draft"]["groupConfigs"]}["industry"] == group_ids["industry"]
    industry = next(g for g in score["draft"]["groupConfigs"] if g["groupName"] == "industry")
    software = next(r for r in industry["ruleConfigurations"]
                    if r["configuration"]["calculation"]["whereCondition"]["conditions"][0]["operation"]["values"] == ["software"])
    assert software["configuration"]["calculation"]["value"] == 12  # 11 points, moved by one


def test_nothing_mapped_is_one_line_unless_unmapped_rules_are_included(default_run, hubspot, tmp_path) -> None:
    path = export_file(default_run, tmp_path, mapping=CrmMapping())
    with pytest.raises(LeadcalError, match="nothing HubSpot could score; map properties"):
        push_hubspot(path, apply=True, out=lambda line: None, client=client(hubspot))
    assert not hubspot.writes()
    push_hubspot(path, apply=True, include_unmapped=True, out=lambda line: None, client=client(hubspot))
    (score,) = hubspot.scores.values()
    assert sum(len(g["ruleConfigurations"]) for g in score["draft"]["groupConfigs"]) == len(io.read_json(path)["rules"])


def test_a_refused_configuration_ends_in_one_line_with_hubspots_reason(default_run, hubspot, tmp_path) -> None:
    path = export_file(default_run, tmp_path)
    broken = io.read_json(path)
    operation = broken["api"]["groupConfigs"][0]["ruleConfigurations"][0]["configuration"]["calculation"][
        "whereCondition"]["conditions"][0]["operation"]
    operation["operator"] = "IS_ROUGHLY"
    io.write_json(path, broken)
    with pytest.raises(LeadcalError) as caught:
        push_hubspot(path, apply=True, include_unmapped=True, out=lambda line: None, client=client(hubspot))
    message = str(caught.value)
    assert message.startswith(f"hubspot refused POST {SCORES} (400): Invalid input; groupConfigs.0.ruleConfigurations.0")
    assert "\n" not in message and not hubspot.scores


def test_rate_limits_and_server_errors_are_retried_but_a_daily_limit_is_not(default_run, hubspot, tmp_path) -> None:
    path = export_file(default_run, tmp_path)
    sleeps: list[float] = []
    hubspot.fail_next = [Failure(429), Failure(503)]
    push_hubspot(path, apply=True, out=lambda line: None, client=client(hubspot, sleeps=sleeps))
    assert [r.status for r in hubspot.requests[:3]] == [429, 503, 200] and len(hubspot.scores) == 1
    assert sleeps[0] == 10.0 and sleeps[1] < 10  # HubSpot's ten-second window, then plain backoff
    hubspot.fail_next = [Failure(429, "DAILY")]
    with pytest.raises(LeadcalError, match=r"rate limit reached \(You have reached your daily limit.\); try again later"):
        push_hubspot(path, apply=False, out=lambda line: None, client=client(hubspot, sleeps=sleeps))
    assert len(sleeps) == 2  # the daily limit is not retried


def test_a_create_that_fails_on_the_server_is_not_sent_twice(default_run, hubspot, tmp_path) -> None:
    hubspot.fail_next = [Failure(502, method="POST")]  # HubSpot may have created it before failing
    with pytest.raises(LeadcalError, match=f"hubspot: POST {SCORES} answered 502"):
        push_hubspot(export_file(default_run, tmp_path), apply=True, out=lambda line: None, client=client(hubspot))
    assert [r.method for r in hubspot.requests].count("POST") == 1


def test_an_answer_that_is_not_json_is_one_line(default_run, hubspot, tmp_path) -> None:
    hubspot.fail_next = [Failure(200, text="<html><body>Proxy login</body></html>")]
    with pytest.raises(LeadcalError, match=r"answered with something that is not a JSON object: '<html><body>Proxy"):
        push_hubspot(export_file(default_run, tmp_path), apply=False, out=lambda line: None, client=client(hubspot))


def test_the_score_is_found_among_many_and_a_group_left_unmapped_is_kept(default_run, hubspot, tmp_path) -> None:
    for i in range(150):  # other scores first: leadcal's is on the second page
        hubspot.scores[str(i)] = {"name": f"other score {i}", "status": "draft", "draft": {"groupConfigs": []},
                                  "published": None}
    push_hubspot(export_file(default_run, tmp_path), apply=True, out=lambda line: None, client=client(hubspot))
    (ours,) = [i for i, score in hubspot.scores.items() if score["name"] == "leadcal lead score"]
    without_company_size = CrmMapping(properties={"industry": "industry"}, activities=MAPPING.activities)
    lines: list[str] = []
    before = len(hubspot.requests)
    push_hubspot(export_file(default_run, tmp_path, mapping=without_company_size), apply=True, out=lines.append,
                 client=client(hubspot))
    assert [r.query.get("after") for r in hubspot.requests[before:] if r.path == SCORES] == [None, "100"]
    assert "= unchanged group 'company_size' (kept as HubSpot holds it: its rules are unmapped here)" in lines
    assert "company_size" in {g["groupName"] for g in hubspot.scores[ours]["draft"]["groupConfigs"]}


def test_a_wrong_token_is_one_line_that_never_shows_it(default_run, hubspot, tmp_path) -> None:
    with pytest.raises(LeadcalError) as caught:
        push_hubspot(export_file(default_run, tmp_path), apply=False, out=lambda line: None,
                     client=client(hubspot, token="pat-wrong-s3cret"))
    message = str(caught.value)
    assert "(401)" in message and "HUBSPOT_ACCESS_TOKEN" in message and "s3cret" not in message
    with pytest.raises(LeadcalError, match="needs HUBSPOT_ACCESS_TOKEN in the environment"):
        push_hubspot(export_file(default_run, tmp_path), apply=False, environ={})
    pasted = {"HUBSPOT_ACCESS_TOKEN": "pat-na1-s3cret\nline", "HUBSPOT_API_URL": hubspot.url}
    with pytest.raises(LeadcalError) as caught:  # http.client would refuse the header and print it in its error
        push_hubspot(export_file(default_run, tmp_path), apply=False, environ=pasted)
    assert "line break" in str(caught.value) and "s3cret" not in str(caught.value)


def scores_file(folder: Path, ids: list[str], column: str = "hs_object_id") -> Path:
    frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(len(ids))], column: ids,
                          "probability": [0.123456 + (i % 8) / 10 for i in range(len(ids))],
                          "fit_points": 1, "engagement_points": 2, "total_points": 3,
                          "grade": [["A", "B", "C", "D"][i % 4] for i in range(len(ids))],
                          "mql": [i % 2 == 0 for i in range(len(ids))]})
    path = folder / "scores.csv"
    frame.to_csv(path, index=False)
    return path


def test_contacts_get_only_the_scores_that_changed(hubspot, tmp_path) -> None:
    first = hubspot.add_contact("a@x.example")
    second = hubspot.add_contact("b@x.example", leadcal_probability="0.2235", leadcal_grade="B", leadcal_mql="false")
    third = hubspot.add_contact("c@x.example")
    path = scores_file(tmp_path, [first, second, third, "999"])
    lines: list[str] = []
    counts = push_contacts(path, client(hubspot), apply=False, out=lines.append)
    assert counts == {"changed": 2, "unchanged": 1, "unknown": 1} and not hubspot.writes()
    assert lines == ["~ update 2 contacts' leadcal_probability, leadcal_grade, leadcal_mql; = 1 unchanged; "
                     "! 1 not in HubSpot (e.g. 999)"]
    push_contacts(path, client(hubspot), apply=True, out=lines.append)
    (update,) = [r for r in hubspot.writes()]
    assert [i["id"] for i in update.json["inputs"]] == [first, third]
    assert hubspot.contacts[first]["leadcal_probability"] == "0.1235" and hubspot.contacts[third]["leadcal_mql"] == "true"
    # HubSpot answers 0.1235 as it stores it; a second push sees nothing to change
    assert push_contacts(path, client(hubspot), apply=False, out=lambda line: None)["changed"] == 0


def test_contacts_matched_by_email_are_updated_by_their_hubspot_id(hubspot, tmp_path) -> None:
    first = hubspot.add_contact("Ann@x.example")
    path = scores_file(tmp_path, ["ann@X.example", "nobody@x.example"], column="email")
    counts = push_contacts(path, client(hubspot), apply=True, out=lambda line: None)
    assert counts == {"changed": 1, "unchanged": 0, "unknown": 1}
    (update,) = hubspot.writes()  # HubSpot refuses an update by e-mail: leadcal sends the id it read
    assert update.json["inputs"] == [{"id": first, "properties": {
        "leadcal_probability": "0.1235", "leadcal_grade": "A", "leadcal_mql": "true"}}]
    twice = scores_file(tmp_path, ["ann@x.example", "ANN@x.example"], column="email")
    with pytest.raises(LeadcalError, match="1 ids appear twice"):
        push_contacts(twice, client(hubspot), apply=False, out=lambda line: None)


def test_a_partly_failed_update_sends_every_batch_and_says_how_many_failed(hubspot, tmp_path) -> None:
    ids = [hubspot.add_contact(f"c{i}@x.example") for i in range(150)]
    hubspot.deleted_before_update = {ids[3]}  # gone between the read and the update
    path = scores_file(tmp_path, ids)
    with pytest.raises(LeadcalError, match=r"1 of 150 contacts were not updated \(Object not found.*\); the other 149 were"):
        push_contacts(path, client(hubspot), apply=True, out=lambda line: None)
    assert [len(r.json["inputs"]) for r in hubspot.writes()] == [100, 50]
    assert hubspot.contacts[ids[149]]["leadcal_grade"] == "B"  # the last batch went through (row 149: grade B)


def test_scores_files_are_read_strictly(tmp_path, hubspot) -> None:
    path = scores_file(tmp_path, ["1", "2"])
    frame = pd.read_csv(path).drop(columns="hs_object_id")
    frame.to_csv(path, index=False)
    with pytest.raises(LeadcalError, match="no hs_object_id or email column .* --keep hs_object_id"):
        push_contacts(path, client(hubspot), apply=False, out=lambda line: None)
    twice = scores_file(tmp_path, ["7", "7"])
    with pytest.raises(LeadcalError, match="1 ids appear twice"):
        push_contacts(twice, client(hubspot), apply=False, out=lambda line: None)
    frame = pd.read_csv(scores_file(tmp_path, ["1", "2"]))
    for column, value, message in (("mql", "yes", "column mql: 1 values are not true/false \\(line 2: 'yes'\\)"),
                                   ("probability", "", "column probability: 1 values are not between 0 and 1 \\(line 2: "),
                                   ("grade", "", "column grade: 1 rows without a grade \\(line 2: ")):
        broken = frame.astype({column: object})
        broken.loc[0, column] = value
        broken.to_csv(path, index=False)
        with pytest.raises(LeadcalError, match=message):
            push_contacts(path, client(hubspot), apply=False, out=lambda line: None)
    known = hubspot.add_contact("p@x.example")
    parquet = tmp_path / "scores.parquet"  # ids with a gap read back as floats; mql as booleans
    frame = pd.read_csv(scores_file(tmp_path, [known, "5"]))
    frame["hs_object_id"] = [float(known), None]
    frame.iloc[:1].to_parquet(parquet)
    assert push_contacts(parquet, client(hubspot), apply=False, out=lambda line: None)["changed"] == 1


def test_cli_push_hubspot_reads_the_token_from_the_environment(default_run, hubspot, tmp_path, monkeypatch, capsys) -> None:
    project = tmp_path / "project"
    folder = project / "models" / "exports"
    folder.mkdir(parents=True)
    export_file(default_run, folder)
    (project / "params.yaml").write_text(json.dumps({"paths": {"models": "models"}}))
    monkeypatch.setenv("HUBSPOT_API_URL", hubspot.url)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    assert main(["--config", str(project / "params.yaml"), "push", "hubspot", "--dry-run", "--publish"]) == 0
    output = capsys.readouterr()
    assert "dry run, nothing sent" in output.out and "> publish" in output.out and TOKEN not in output.out + output.err
    assert not hubspot.writes()
    with pytest.raises(SystemExit) as usage:
        main(["push", "mautic", "--dry-run", "--publish"])
    assert usage.value.code == 64
