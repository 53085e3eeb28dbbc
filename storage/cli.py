"""``flowopd runs ...``: the run queue from a terminal, over the same store and calls as the app.

:func:`register` adds the ``runs`` command to the ``flowopd`` parser. Building the parser imports
nothing heavy; each handler imports the store (and, for submit/resume, the stage's libraries) itself.
Every subcommand takes ``--json`` (machine-readable output) and ``--home DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

from .paths import DEFAULT_HOME, HOME_ENV
from .stages import stages as all_stages

EXAMPLES = {
    "submit": "flowopd runs submit pretrain --config pretrain.json --name base-8k",
    "list": "flowopd runs list --status running --json",
    "show": "flowopd runs show r3f9c0a1b2d",
    "stop": "flowopd runs stop r3f9c0a1b2d",
    "resume": "flowopd runs resume r3f9c0a1b2d",
    "delete": "flowopd runs delete r3f9c0a1b2d",
    "logs": "flowopd runs logs r3f9c0a1b2d --tail 40",
    "tick": "flowopd runs tick --max-concurrent 1   # e.g. from cron, to keep the queue moving",
    "webhook": "flowopd runs webhook https://hooks.example.com/flowopd   # POSTed when any run ends; '' turns it off",
}
HOME_HELP = f"data folder holding flowopd.db and runs/ (default: ${HOME_ENV}, else {DEFAULT_HOME})"


def _store(args: argparse.Namespace):
    from .store import Store

    return Store(getattr(args, "home", None))


def _print(args: argparse.Namespace, data: object, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _eta(run) -> str:
    """Time left of a running run, e.g. ``12m05s`` (``-`` when not running or not yet timed)."""
    if run.status != "running" or run.eta_s is None:
        return "-"
    minutes, seconds = divmod(int(run.eta_s), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def _line(run) -> str:
    steps = f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)
    return (f"{run.id}  {run.name[:20]:20}  {run.stage:9}  {run.status:11}  {steps:>13}  {_eta(run):>7}  "
            f"{run.device or '-':6}  {run.origin:6}  {_when(run.created_at)}")


def cmd_submit(args: argparse.Namespace) -> None:
    from flowopd.config.base import naming_file, read_config_data

    from .paths import resolve_home
    from .queue import submit

    config = read_config_data(args.config, args.stage)
    home = resolve_home(getattr(args, "home", None), create=False)
    fresh = not home.exists()
    try:
        with _store(args) as store, naming_file(args.config):  # the stage's freeze validates (and names the file)
            run = submit(store, args.stage, config, name=args.name)
    except Exception:
        if fresh:  # a refused first submit leaves no data folder behind
            shutil.rmtree(home, ignore_errors=True)
        raise
    _print(args, run.to_dict(), run.id)


def cmd_list(args: argparse.Namespace) -> None:
    from .queue import reap

    with _store(args) as store:
        reap(store)
        runs = store.list_runs(args.status)
    header = (f"{'ID':11}  {'NAME':20}  {'STAGE':9}  {'STATUS':11}  {'STEP':>13}  {'ETA':>7}  {'DEVICE':6}  "
              f"{'ORIGIN':6}  CREATED")
    _print(args, [r.to_dict() for r in runs], "\n".join([header, *map(_line, runs)]) if runs else "no runs")


def cmd_show(args: argparse.Namespace) -> None:
    from .queue import reap

    with _store(args) as store:
        reap(store)
        run = store.get_run(args.run_id)
        data = {"run": run.to_dict(), "metrics": store.latest_metrics(run.id), "artifacts": store.artifacts(run.id),
                "samples": len(store.samples(run.id)), "folder": str(store.run_dir(run.id))}
    lines = [f"{k:12} {v}" for k, v in (("id", run.id), ("name", run.name), ("stage", run.stage),
             ("status", run.status), ("step", f"{run.step}/{run.total_steps or '?'}"), ("eta", _eta(run)),
             ("progress", run.progress or "-"), ("origin", run.origin), ("device", run.device or "-"),
             ("pid", run.pid or "-"), ("created", _when(run.created_at)), ("started", _when(run.started_at)),
             ("ended", _when(run.ended_at)), ("heartbeat", _when(run.heartbeat)), ("folder", data["folder"]),
             ("config", json.dumps(run.config, sort_keys=True)))]
    lines += [f"metric       {k} = {v:.6g}" for k, v in data["metrics"].items()]
    lines += [f"artifact     {a['kind']} {a['path']} (step {a['step']})" for a in data["artifacts"]]
    if run.error:
        lines += ["error:", run.error]
    _print(args, data, "\n".join(lines))


def cmd_stop(args: argparse.Namespace) -> None:
    from .queue import stop

    with _store(args) as store:
        state = stop(store, args.run_id, force=args.force)
        status = store.get_run(args.run_id).status
    text = {"stopped": f"{args.run_id} stopped (it had not started)",
            "stopping": f"{args.run_id} stopping: it saves a checkpoint, then ends as stopped"}[state]
    if args.force and status == "interrupted":
        text = f"{args.run_id} killed: interrupted, resumable from its last checkpoint"
    _print(args, {"id": args.run_id, "result": state, "status": status}, text)


def cmd_resume(args: argparse.Namespace) -> None:
    from .queue import resume

    with _store(args) as store:
        run = resume(store, args.run_id)
    _print(args, run.to_dict(), f"{run.id} {run.status}, resuming from step {run.resume_step}")


def cmd_delete(args: argparse.Namespace) -> None:
    with _store(args) as store:
        store.delete_run(args.run_id)
    _print(args, {"id": args.run_id, "deleted": True}, f"{args.run_id} deleted")


def cmd_logs(args: argparse.Namespace) -> None:
    from .logs import tail_lines

    with _store(args) as store:
        path = store.path(store.get_run(args.run_id).log_path)
    lines = tail_lines(path, args.tail)
    _print(args, {"id": args.run_id, "path": str(path), "lines": lines}, "\n".join(lines))


def cmd_tick(args: argparse.Namespace) -> None:
    from .queue import tick

    with _store(args) as store:
        if args.max_concurrent is not None:
            if args.max_concurrent < 1:
                raise ValueError(f"--max-concurrent {args.max_concurrent} must be at least 1")
            store.set_setting("max_concurrent", args.max_concurrent)
        result = tick(store)
    _print(args, {"started": result.started, "interrupted": result.interrupted},
           f"started: {' '.join(result.started) or '-'}; interrupted: {' '.join(result.interrupted) or '-'}")


def cmd_webhook(args: argparse.Namespace) -> None:
    from .notify import WEBHOOK_SETTING, check_url

    with _store(args) as store:
        if args.url is not None:
            store.set_setting(WEBHOOK_SETTING, check_url(args.url) if args.url.strip() else "")
        url = store.get_setting(WEBHOOK_SETTING) or ""
    _print(args, {"webhook": url or None}, f"webhook: {url or 'off'}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``runs`` and its subcommands to the ``flowopd`` subparsers ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=HOME_HELP)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    text = "Queue, watch, stop, resume and delete runs executed by background workers."
    runs = sub.add_parser("runs", help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()))
    runs.add_argument("--home", help=HOME_HELP)
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = rsub.add_parser(name, parents=[common], help=help_text, description=help_text,
                            epilog=f"example: {EXAMPLES[name]}", formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    def with_id(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = add(name, func, help_text)
        p.add_argument("run_id", metavar="ID", help="run id, as `flowopd runs list` shows it")
        return p

    known = all_stages()
    stages = "; ".join(f"{s.name}: {s.help}" for s in known.values())
    p = add("submit", cmd_submit, "Queue a run with a frozen copy of its config; prints the run id.")
    p.add_argument("stage", choices=list(known), metavar="STAGE", help=stages)
    p.add_argument("--config", required=True, help="JSON file with the stage's config fields ({} for defaults)")
    p.add_argument("--name", help="a name to recognise the run by (default: STAGE-xxxx)")
    p = add("list", cmd_list, "List runs, newest first (dead workers are marked interrupted first).")
    p.add_argument("--status", choices=["queued", "running", "finished", "failed", "stopped", "interrupted"],
                   help="only runs with this status")
    with_id("show", cmd_show, "Show a run: status, config, latest metrics, artifacts, error.")
    p = with_id("stop", cmd_stop, "Stop a run: it saves a checkpoint, then ends as stopped.")
    p.add_argument("--force", action="store_true", help="kill the worker now (the run becomes interrupted)")
    with_id("resume", cmd_resume, "Resume a stopped, interrupted or failed run from its last checkpoint.")
    with_id("delete", cmd_delete, "Delete a run that is not running: its rows and its folder, nothing else.")
    p = with_id("logs", cmd_logs, "Print the last lines of a run's worker log.")
    p.add_argument("--tail", type=int, default=40, help="how many lines (default %(default)s)")
    p = add("webhook", cmd_webhook, "Show or set the URL a small JSON is POSTed to when any run of this data "
            "folder ends (run id, name, stage, status, error, latest metrics; one try, 5 s timeout).")
    p.add_argument("url", nargs="?", metavar="URL", help="an http(s) URL; '' turns notifications off")
    p = add("tick", cmd_tick, "Mark dead workers interrupted and start queued runs (what the app does "
            "every few seconds).")
    p.add_argument("--max-concurrent", type=int, help="runs at a time on this machine (stored; default 1)")
