"""``uoc audit`` over several checkpoints: one table, the original's work done once."""

from __future__ import annotations

import json

from uoc_test_helpers import BLIND_JUDGE_MODULE

from pytest_uoc.cli import main


def test_two_checkpoints_share_the_originals_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "compare_judges.py").write_text(BLIND_JUDGE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    status = main(["audit", "--original", "zoo:digits", "--unlearned", "zoo:digits-gold-three",
                   "--unlearned", "zoo:digits-esd-three", "--concept", "three", "--prompt", "a handwritten three",
                   "--prompt", "the digit 3", "--steps", "8", "--seeds", "16", "--psis", "0,0.15,0.35,0.55,1",
                   "--judge", "compare_judges:never", "--device", "cpu", "--out", str(out),
                   "--cache-dir", str(tmp_path / "cache"), "--html", str(tmp_path / "all.html"),
                   "--progress", "never"])
    printed = capsys.readouterr().out
    assert status == 1, printed  # exit 0 only when every gate passes: a blind judge passes none
    assert "== [1/2] zoo:digits-gold-three × three" in printed and "== [2/2] zoo:digits-esd-three × three" in printed
    entries = json.loads((out / "comparison.json").read_text())["entries"]
    assert [(e["checkpoint"], e["verdict"]) for e in entries] == [
        ("zoo:digits-gold-three", "inconclusive"), ("zoo:digits-esd-three", "inconclusive")]
    first, second = entries
    assert first["original_unet_evals"] > 0 and second["original_unet_evals"] == 0  # cached trajectories
    assert second["unet_evals"] < first["unet_evals"]
    assert (out / "comparison.png").stat().st_size > 0
    assert (tmp_path / "all.html").read_text().count('<section class="test"') == 2
    assert "checkpoint             concept  verdict" in printed


def test_several_concepts_with_one_prompt_list_is_refused(tmp_path, capsys):
    status = main(["audit", "--unlearned", "zoo:digits-gold-three", "--concept", "three", "--concept", "red",
                   "--prompt", "a handwritten three", "--out", str(tmp_path / "out")])
    assert status == 2
    assert "--prompt and --prompts-file describe one concept" in capsys.readouterr().err
