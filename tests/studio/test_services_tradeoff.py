"""The trade-off view (services/results.py): one chart of every model's task scores, and each student's retention
of each teacher's gain, on hand-made lines (the Compare tab and the Results tab draw with the same function)."""

from __future__ import annotations

from flowopd_studio.services.results import column_retention, draw_tradeoff

LINES = [("base", "base", None, {"compose": 0.3, "text": 0.5, "prefer": 0.6, "quality": 0.7}),
         ("teacher-text", "teacher", "text", {"compose": 0.2, "text": 0.9, "prefer": 0.5, "quality": 0.7}),
         ("teacher-prefer", "teacher", "prefer", {"compose": 0.3, "text": 0.5, "prefer": 0.62, "quality": 0.7}),
         ("opd", "student", None, {"compose": 0.3, "text": 0.8, "prefer": 0.61, "quality": None})]


def test_retention_per_student_and_teacher_on_the_teachers_task() -> None:
    kept = column_retention(LINES)
    assert kept[0] == "- `opd` keeps 0.75 of `teacher-text`'s +0.400 on `text`"
    assert "not judged: the teacher gained +0.020" in kept[1] and len(kept) == 2
    assert column_retention(LINES[1:]) == []  # no base, no retention


def test_the_chart_is_drawn_with_a_missing_score(tmp_path) -> None:
    out = draw_tradeoff(LINES, tmp_path / "t.png", "title")
    assert out.is_file() and out.stat().st_size > 5000
    assert draw_tradeoff([], tmp_path / "none.png", "title") is None


def test_the_results_tab_s_retention_is_the_report_s_per_seed_figure_where_it_has_one() -> None:
    from flowopd_studio.services.results import retention_lines

    means = {name: {t: v if v is not None else 0.0 for t, v in row.items()} for name, _, _, row in LINES}
    per_seed = {"text": {"mean": 0.7, "std": 0.05, "per_seed": [0.65, 0.75]}}
    lines = retention_lines(means, per_seed=per_seed)
    assert lines[0] == "- `text`: opd keeps 0.70 ± 0.05 (seeds: 0.65, 0.75) of `teacher-text`'s +0.400"
    assert lines[1].startswith("- `prefer`: opd keeps 0.50 of")  # no per-seed figure: from the means
    assert retention_lines(means)[0] == "- `text`: opd keeps 0.75 of `teacher-text`'s +0.400"
