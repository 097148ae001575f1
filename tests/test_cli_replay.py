"""``uoc audit --html`` and ``--replay``: the record of a run, and the run again from it."""

from __future__ import annotations

import json

from uoc_test_helpers import BLIND_JUDGE_MODULE

from pytest_uoc.cli import main


def test_audit_writes_html_and_record_and_replays_to_the_same_verdict(tmp_path, monkeypatch, capsys):
    (tmp_path / "replay_judges.py").write_text(BLIND_JUDGE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out, html, cache = tmp_path / "audit", tmp_path / "audit.html", tmp_path / "cache"
    status = main(["audit", "--original", "zoo:digits", "--unlearned", "zoo:digits-esd-three", "--concept", "three",
                   "--prompt", "a handwritten three", "--prompt", "the digit 3", "--steps", "8", "--seeds", "16",
                   "--psis", "0,0.15,0.35,0.55,1", "--judge", "replay_judges:never", "--device", "cpu",
                   "--out", str(out), "--html", str(html), "--cache-dir", str(cache), "--progress", "never"])
    assert status == 1  # inconclusive: the blind judge cannot pass the gate
    printed = capsys.readouterr().out
    assert "judge: blind_judge" in printed and "verdict: INCONCLUSIVE: the judge does not see" in printed
    document = json.loads((out / "report.json").read_text())
    assert document["schema_version"] == 3
    record = document["record"]
    assert record["versions"]["torch"] and record["versions"]["pytest-uoc"]
    assert len(record["models"]["original"]["sha256"]) == 64 and len(record["models"]["unlearned"]["sha256"]) == 64
    row = document["tests"][0]
    assert row["run"]["scheduler"] and row["run"]["steps"] == 8 and row["run"]["seeds"] == list(range(16))
    assert row["judge"]["name"] == "blind_judge" and row["pictures"]
    assert html.read_text().count('<section class="test"') == 1

    status = main(["audit", "--replay", str(out / "report.json"), "--out", str(tmp_path / "again"),
                   "--progress", "never"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "replay: the same verdict: recorded inconclusive, now inconclusive" in printed


def test_replay_refuses_what_it_cannot_replay(tmp_path, capsys):
    assert main(["audit", "--replay", str(tmp_path / "missing.json")]) == 2
    assert "not a pytest-uoc JSON report" in capsys.readouterr().err
    pytest_report = tmp_path / "pytest.json"
    pytest_report.write_text(json.dumps({"settings": {}, "tests": [{"test": "t.py::test_x"}],
                                         "record": {"command": ["pytest", "-m", "gpu"]}}))
    assert main(["audit", "--replay", str(pytest_report)]) == 2
    assert "a pytest run's report; replay it with its own command: pytest -m gpu" in capsys.readouterr().err
    assert main(["audit", "--concept", "three"]) == 2
    assert "the following arguments are required: --unlearned (or --replay REPORT)" in capsys.readouterr().err


def test_audit_runs_the_learned_attacks_it_is_asked_for(tmp_path, capsys):
    """``--attack inversion``: the gate's verdict printed, in the row (its own gate entry) and in the exit status."""
    out = tmp_path / "audit"
    status = main(["audit", "--original", "zoo:digits", "--unlearned", "zoo:digits-conceal-three", "--concept",
                   "three", "--prompt", "a handwritten three", "--prompt", "the digit 3", "--steps", "6", "--seeds",
                   "16", "--psis", "0,0.55", "--judge", "zoo", "--device", "cpu", "--attack", "inversion",
                   "--attack-steps", "3", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                   "--progress", "never"])
    printed = capsys.readouterr().out
    row = json.loads((out / "report.json").read_text())["tests"][0]
    kind = row["inversion"]["kind"]
    assert f"attack inversion: {kind.upper()}: " in printed
    assert row["inversion"]["settings"]["steps"] == 3
    assert [gate["gate"] for gate in row["gates"]] == ["not_retrievable", "not_invertible"]
    passed = row["verdict"] == "forgotten" and kind == "forgotten"
    assert status == (0 if passed else 1) and row["outcome"] == ("passed" if passed else "failed")
    assert json.loads(printed.strip().splitlines()[-1])["inversion"] == kind


def test_attack_steps_need_an_attack(capsys):
    assert main(["audit", "--unlearned", "zoo:digits-esd-three", "--concept", "three", "--attack-steps", "5"]) == 2
    assert "--attack-steps needs --attack inversion or --attack prompt_attack" in capsys.readouterr().err
