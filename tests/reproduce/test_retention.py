"""Retention of each teacher's gain, on hand-made rows."""

from __future__ import annotations

import pytest

from flowopd.reproduce.claims import claims
from flowopd.reproduce.retention import retention, task_retention


def _rows(base: float, teacher: float, student: float) -> dict[str, float]:
    return {"compose": base, "text": teacher, "prefer": student, "quality": 0.5}


def test_retention_of_hand_made_rows() -> None:
    assert retention(0.7, 0.9, 0.5) == pytest.approx(0.5)
    assert retention(0.95, 0.9, 0.5) == pytest.approx(1.125)  # a student above its teacher
    assert retention(0.4, 0.9, 0.5) == pytest.approx(-0.25)  # below the base
    assert retention(0.6, 0.5, 0.5) is None
    per_seed = {"base": [{"text": 0.5, "prefer": 0.6}, {"text": 0.5, "prefer": 0.6}],
                "teacher-text": [{"text": 0.9, "prefer": 0.5}, {"text": 0.7, "prefer": 0.5}],
                "teacher-prefer": [{"text": 0.5, "prefer": 0.62}, {"text": 0.5, "prefer": 0.62}],
                "opd": [{"text": 0.7, "prefer": 0.61}, {"text": 0.65, "prefer": 0.62}]}
    out = task_retention(per_seed)
    assert set(out) == {"text", "prefer"}  # no teacher row for compose or quality
    assert out["text"]["per_seed"] == pytest.approx([0.5, 0.75])
    assert out["text"]["mean"] == pytest.approx(0.625) and out["text"]["std"] == pytest.approx(0.1767767, abs=1e-6)
    assert out["text"]["teacher_gain"] == pytest.approx(0.3) and out["text"]["judged"]
    assert out["prefer"]["per_seed"] == pytest.approx([0.5, 1.0]) and not out["prefer"]["judged"]  # gain 0.02


def test_the_claims_judge_retention_only_where_the_teacher_gained() -> None:
    tasks = ("compose", "text", "prefer", "quality")
    base = {t: 0.5 for t in tasks} | {"average": 0.5}
    row = {t: 0.5 for t in tasks} | {"average": 0.5}
    per_seed = {name: [dict(row)] for name in ("opd-no-mar", "opd-sft", "grpo-mix")}
    per_seed["base"] = [base]
    for t in tasks:
        per_seed[f"teacher-{t}"] = [row | {t: 0.9 if t == "text" else 0.51}]
    per_seed["opd"] = [row | {"text": 0.88, "average": 0.55}]
    text = "\n".join(claims(per_seed))
    assert "Retention of `teacher-text`'s gain (+0.400) in `opd` on `text`: 0.95 (target ≥ 0.9): **holds**" in text
    assert "`teacher-prefer`'s gain in `opd` on `prefer`: 0.00, not judged" in text
