"""What the Runs tab shows, built from the run store as plain data (no gradio): the runs table, the live
plots' long-format frames and the reward figure, teachers' reference scores, sample images by step, log tails.

Metric names follow :mod:`flowopd.metric_names`; a reproduce run's names carry a ``seed<k>/<stage>/`` prefix,
which stays in the series label. Every series is downsampled in the store's query
(:meth:`~flowopd_studio.storage.store.Store.metric_series`) before smoothing, so a plot's cost does not grow
with a run's length.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.signal import lfilter

from flowopd import metric_names as mn
from flowopd_studio.storage.errors import StoreError
from flowopd_studio.storage.logs import tail_lines
from flowopd_studio.storage.paths import RUN_ID_RE, RUNS_DIR
from flowopd_studio.storage.records import Run
from flowopd_studio.storage.store import Store

MAX_POINTS = 2000  # per series: about the pixel width of a wide plot, twice over
MAX_PLOT_RUNS = 10
PREFIX = re.compile(r"(?P<prefix>seed\d+/[^/]+/)?(?P<tail>.+)")
PROFILE = re.compile(r"(?P<kl>kl/(?:teacher|anchor|base))/step_(?P<j>\d+)")
KL_MAIN = (mn.KL_TEACHER, mn.KL_ANCHOR, mn.KL_BASE)
TABLE_COLUMNS = ["id", "name", "stage", "status", "progress", "ETA", "origin", "line", "created"]
FRAME_COLUMNS = ["step", "value", "series"]


def split_name(name: str) -> tuple[str, str]:
    """``seed0/opd/reward/text`` -> ``("seed0/opd/", "reward/text")``; a plain name has prefix ``""``."""
    m = PREFIX.fullmatch(name)
    return (m["prefix"] or "", m["tail"]) if m else ("", name)


def panel_of(name: str) -> str | None:
    """Which plot a metric belongs on: reward (per task), kl (teacher, anchor, base; per task), loss, lr."""
    tail = split_name(name)[1]
    if tail.startswith("reward/") and tail != mn.REWARD_TOTAL:
        return "reward"
    if tail in KL_MAIN or (tail.startswith(KL_MAIN) and not PROFILE.fullmatch(tail)):
        return "kl"
    return {mn.LOSS: "loss", mn.LR: "lr"}.get(tail)


def reward_task(name: str) -> str | None:
    """The task of a per-task reward curve (``reward/<task>``), else None."""
    parts = split_name(name)[1].split("/")
    return parts[1] if len(parts) == 2 and parts[0] == "reward" and parts[1] != "total" else None


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: exponential moving average with weight ``weight`` in [0, 1), debiased at the start.

    >>> ema(np.array([0.0, 1.0, 1.0]), 0.0).tolist()
    [0.0, 1.0, 1.0]
    >>> ema(np.array([2.0, 2.0]), 0.5).tolist()
    [2.0, 2.0]
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing={weight} is invalid: use a weight from 0 (none) to below 1")
    if weight == 0 or len(values) == 0:
        return values
    acc = lfilter([1 - weight], [1, -weight], values)  # acc[i] = w acc[i-1] + (1 - w) x[i], in C
    return acc / (1 - weight ** np.arange(1, len(values) + 1))


def format_eta(seconds: float | None) -> str:
    """``3725`` -> ``1 h 02 min``; ``75`` -> ``1 min 15 s``; None -> ``""``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def progress_fraction(run: Run) -> float | None:
    return min(1.0, run.step / run.total_steps) if run.total_steps else None


def shown_status(run: Run, stopping: set[str]) -> str:
    """The status the app shows: ``stopping…`` for a running run a stop was asked of, else the run's."""
    return "stopping…" if run.status == "running" and run.id in stopping else run.status


def runs_table(runs: list[Run], stopping: set[str] = frozenset()) -> pd.DataFrame:
    """One row per run, newest first: id, name, stage, status (``stopping…`` once a stop was asked of a running
    run), progress (percent and step/total), ETA, origin."""
    rows = []
    for r in runs:
        frac = progress_fraction(r)
        progress = f"{frac:.0%} · {r.step}/{r.total_steps}" if frac is not None else str(r.step or "")
        eta = format_eta(r.eta_s) if r.status == "running" else ""
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        rows.append([r.id, r.name, r.stage, shown_status(r, stopping), progress, eta, r.origin, r.progress or "",
                     created])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def plot_runs(store: Store, run_ids: list[str]) -> list[Run]:
    """The runs to plot (valid ids that exist, in order, no repeats, at most :data:`MAX_PLOT_RUNS`)."""
    runs, seen = [], set()
    for run_id in run_ids:
        if run_id in seen or not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
            continue
        seen.add(run_id)
        try:
            runs.append(store.get_run(run_id))
        except StoreError:
            continue  # deleted meanwhile
    return runs[:MAX_PLOT_RUNS]


def _label(run: Run, name: str, several: bool) -> str:
    return f"{run.name}: {name}" if several else name


def panel_frames(store: Store, runs: list[Run], smoothing: float = 0.0,
                 max_points: int = MAX_POINTS) -> dict[str, pd.DataFrame]:
    """Long-format frames ``step, value, series`` for the panels reward, kl, loss and lr, EMA-smoothed.

    Frames also carry ``run_id`` and ``name`` (the metric), which the reward figure and pass marks use.
    """
    ids = [r.id for r in runs]
    names = [n for n in store.metric_names(ids) if panel_of(n)]
    by_id = {r.id: r for r in runs}
    parts: dict[str, list[pd.DataFrame]] = {"reward": [], "kl": [], "loss": [], "lr": []}
    rows = store.metric_series(ids, names, max_points)  # ordered by run, name, step
    cuts = [0] + [i for i in range(1, len(rows)) if rows[i]["name"] != rows[i - 1]["name"]
                  or rows[i]["run_id"] != rows[i - 1]["run_id"]] + [len(rows)]
    for a, b in zip(cuts, cuts[1:]):
        if a == b:
            continue
        run_id, name = rows[a]["run_id"], rows[a]["name"]
        values = ema(np.fromiter((r["value"] for r in rows[a:b]), float, b - a), smoothing)
        steps = np.fromiter((r["step"] for r in rows[a:b]), np.int64, b - a)
        parts[panel_of(name)].append(pd.DataFrame({"step": steps, "value": values, "run_id": run_id, "name": name,
                                                   "series": _label(by_id[run_id], name, len(runs) > 1)}))
    # Typed even when empty: the browser's plot keeps the encoding of its first frame, and an untyped empty
    # frame made "value" nominal, so later points of a live run drew no line (seen in Chromium).
    empty = pd.DataFrame({"step": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64"),
                          "series": pd.Series(dtype="str"), "run_id": pd.Series(dtype="str"),
                          "name": pd.Series(dtype="str")})
    return {k: pd.concat(v, ignore_index=True) if v else empty.copy() for k, v in parts.items()}


def kl_profile(store: Store, runs: list[Run]) -> pd.DataFrame:
    """The KL per denoising step ``j`` (``kl/teacher/step_<j>``...) at each run's latest logged training step."""
    ids = [r.id for r in runs]
    names = [n for n in store.metric_names(ids) if PROFILE.fullmatch(split_name(n)[1])]
    by_id, out = {r.id: r for r in runs}, []
    for row in store.metric_series(ids, names, max_points=2):  # first and last row: keep the last
        prefix, tail = split_name(row["name"])
        m = PROFILE.fullmatch(tail)
        out.append({"denoising step": int(m["j"]), "value": row["value"],
                    "series": _label(by_id[row["run_id"]], prefix + m["kl"], len(runs) > 1), "key": row["name"]})
    if not out:
        return pd.DataFrame({"denoising step": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64"),
                             "series": pd.Series(dtype="str")})  # typed: see panel_frames
    df = pd.DataFrame(out).drop_duplicates("key", keep="last").drop(columns="key")
    return df.sort_values(["series", "denoising step"], ignore_index=True)


# -- teachers' reference scores ------------------------------------------------------------------------------
def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _row_scores(row: dict) -> dict[str, float]:
    """A teachers-table row's scores, whatever columns it has: ``scores``/``eval_scores``/``eval`` (JSON
    ``{task: score}`` or a number for the row's task) or ``score``/``eval_score`` (a number)."""
    out: dict[str, float] = {}
    for key in ("scores", "eval_scores", "eval", "score", "eval_score"):
        value = row.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, dict):
            out.update({t: float(v) for t, v in value.items() if _number(v)})
        elif _number(value) and row.get("task"):
            out.setdefault(row["task"], float(value))
    return out


def _run_of_adapter(store: Store, adapter: str) -> str | None:
    """The run whose folder holds ``adapter`` (HOME/runs/<id>/adapter), else None."""
    try:
        rel = Path(adapter).resolve().relative_to((store.home / RUNS_DIR).resolve())
    except (ValueError, OSError):
        return None
    return rel.parts[0] if rel.parts and RUN_ID_RE.fullmatch(rel.parts[0]) else None


def _same_path(store: Store, a: str | None, b: str) -> bool:
    if not a:
        return False
    try:
        pa = Path(a) if Path(a).is_absolute() else store.home / a
        return pa.resolve() == Path(b).resolve()
    except OSError:
        return False


def _mean_metric(store: Store, run_id: str, name: str, last: int = 1) -> float | None:
    """The mean of the last ``last`` values of a metric (the value of its newest row by default), or None."""
    try:
        rows = store.metric_series([run_id], [name], max_points=10_000_000)[-last:]
    except StoreError:
        return None
    return float(np.mean([r["value"] for r in rows])) if rows else None


def _eval_score(store: Store, run_id: str | None, task: str) -> float | None:
    return _mean_metric(store, run_id, mn.eval_metric(task)) if run_id and RUN_ID_RE.fullmatch(run_id) else None


def _teacher_score(store: Store, rows: list[dict], evals: list[Run], task: str, adapter: str) -> float | None:
    """Steps 1-4 of :func:`teacher_references` for the teacher ``adapter`` of ``task``."""
    source = _run_of_adapter(store, adapter)
    for row in rows:
        if _same_path(store, row.get("path"), adapter) or (source and row.get("source_run") == source):
            score = _row_scores(row).get(task)
            if score is None:
                score = _eval_score(store, row.get("eval_run"), task)
            if score is not None:
                return score
    for ev in evals:  # newest first
        score = _eval_score(store, ev.id, task) if _same_path(store, ev.config.get("adapter"), adapter) else None
        if score is not None:
            return score
    if source:
        for score in (_eval_score(store, source, task), _mean_metric(store, source, mn.reward(task), 5)):
            if score is not None:
                return score
    return None


def teacher_references(store: Store, run: Run) -> dict[str, float]:
    """Each teacher's score on its task, ``{task: score}``: the dashed reference lines of the reward plot.

    Teachers come from the run's config (``teachers``: task -> adapter folder, as OPD and cold-start runs freeze
    them). For each, the first of these that has a number wins:

    1. The store's ``teachers`` table: the row of that adapter (same ``path``, or ``source_run`` the run whose
       folder holds it): its ``scores`` (JSON ``{task: score}``; also read: ``eval_scores``, ``eval``, ``score``,
       ``eval_score``), else the ``eval/<task>`` of its ``eval_run``. Read defensively: a missing column or bad
       JSON is no score.
    2. The newest eval run of that adapter (an ``eval`` run whose config ``adapter`` is it): ``eval/<task>``.
    3. The teacher's own run: ``eval/<task>``, else (last resort) the mean of its last 5 ``reward/<task>``
       values, the same measure as the student's training curve.

    A reproduce run adds its own evaluation of each teacher stage, ``eval/teacher-<task>/<task>`` averaged over
    the seeds. A run without teachers in its config (a GRPO mix) gets the scores of the registered teachers of
    each task (step 1), except those it trained itself.
    """
    teachers = run.config.get("teachers") if isinstance(run.config.get("teachers"), dict) else {}
    rows = store.teachers()
    evals = [r for r in store.list_runs() if r.stage == "eval" and r.config.get("adapter")] if teachers else []
    refs: dict[str, float] = {}
    for task, adapter in teachers.items():
        score = _teacher_score(store, rows, evals, task, str(adapter))
        if score is not None:
            refs[task] = score
    if run.stage == "reproduce":
        for name in store.metric_names([run.id]):
            m = re.fullmatch(r"eval/teacher-(?P<task>[^/]+)/(?P=task)", name)
            if m and m["task"] not in refs:
                rows_ = store.metric_series([run.id], [name], max_points=10_000_000)
                refs[m["task"]] = float(np.mean([r["value"] for r in rows_]))
    if not teachers:
        for row in rows:
            task = row.get("task")
            if row.get("source_run") != run.id and task and task not in refs:
                score = _row_scores(row).get(task)
                if score is None:
                    score = _eval_score(store, row.get("eval_run"), task)
                if score is not None:
                    refs[task] = score
    return refs


@dataclass
class Pass:
    """The first (smoothed) point where a student's reward curve reaches its teacher's score."""

    series: str
    task: str
    step: int
    value: float
    teacher: float


def passes(frame: pd.DataFrame, refs: dict[str, dict[str, float]]) -> list[Pass]:
    """Where each ``reward/<task>`` series of ``frame`` first reaches ``refs[run_id][task]`` (a teacher's own
    stage in a reproduce run, ``teacher-<task>``, is not a student and gets no mark)."""
    out = []
    for (series, run_id, name), g in frame.groupby(["series", "run_id", "name"], sort=False):
        task = reward_task(name)
        ref = refs.get(run_id, {}).get(task) if task else None
        if ref is None or split_name(name)[0].endswith(f"/teacher-{task}/"):
            continue
        hit = np.flatnonzero(g["value"].to_numpy(dtype=float) >= ref)
        if len(hit):
            i = hit[0]
            out.append(Pass(series, task, int(g["step"].iloc[i]), float(g["value"].iloc[i]), ref))
    return out


def reward_figure(frame: pd.DataFrame, refs: dict[str, dict[str, float]], marks: list[Pass]):
    """Reward per task (solid), each teacher's score (dashed, the task's colour) and a star where a student
    passes its teacher. Matplotlib, because gr.LinePlot has no dashed or marked series."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.6))
    # fixed margins (a constrained layout draws twice); the legend goes under the axes, full width, so that long
    # series names and teacher lines are not cut at the figure's edge
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.36, top=0.96)
    ax = fig.add_subplot()
    one_run = frame["run_id"].nunique() <= 1  # one run: a task's curve and its teacher share a colour
    task_color: dict[str, str] = {}
    for i, (series, g) in enumerate(frame.groupby("series", sort=False)):
        task = reward_task(g["name"].iloc[0]) or series
        color = task_color.setdefault(task, f"C{len(task_color) % 10}") if one_run else f"C{i % 10}"
        few = len(g) < 3  # a series of one or two points is a dot, not an invisible line
        ax.plot(g["step"].to_numpy(), g["value"].to_numpy(), color=color, lw=1.3, label=series,
                marker="o" if few else None, ms=5)
    drawn = set()
    for scores in refs.values():
        for task, score in scores.items():
            if (task, score) in drawn:
                continue
            drawn.add((task, score))
            ax.axhline(score, ls="--", lw=1.1, color=task_color.get(task, "0.4"), label=f"teacher {task}: {score:.3f}")
    for m in marks:
        ax.plot([m.step], [m.value], marker="*", ms=13, color="gold", mec="black", zorder=5)
        ax.annotate(f"passes teacher {m.task}", (m.step, m.value), textcoords="offset points", xytext=(4, 6),
                    fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    if frame.empty and not drawn:
        ax.text(0.5, 0.5, "no reward rows yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    else:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,  # "best" costs 0.1 s
                  frameon=False)
    return fig


# -- samples and logs ----------------------------------------------------------------------------------------
def sample_groups(store: Store, run_id: str) -> dict[str, list[dict]]:
    """The run's samples by (seed, prompt), labelled ``"seed S: prompt"``, each list ordered by step."""
    groups: dict[str, list[dict]] = {}
    for row in store.samples(run_id):
        groups.setdefault(f"seed {row['seed']}: {row['prompt']}", []).append(row)
    return groups


SAMPLE_SIDE = 256  # a tiny model's 32 px sample is shown this large, pixel for pixel


def sample_image(store: Store, row: dict) -> Image.Image:
    """The sample's image, read through the data folder's path guard (never a raw path for the browser), enlarged
    by a whole factor with nearest-neighbour when it is small (a 32 px sample is 8 x 8 screen pixels a pixel)."""
    with Image.open(store.path(row["path"])) as im:
        image = im.convert("RGB")
    factor = SAMPLE_SIDE // max(image.size)
    if factor <= 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def log_tail(store: Store, run: Run, lines: int = 60) -> str:
    return "\n".join(tail_lines(store.path(run.log_path), lines))
