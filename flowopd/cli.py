"""The library's commands: thin wrappers over the library (heavy imports happen inside commands, after the
arguments and config files are checked).

:func:`build_parser` builds them; the command root :mod:`flowopd_studio.cli` (``flowopd``, ``python -m
flowopd``) adds the run store's ``runs`` and ``--record`` and runs them, turning library errors (bad input)
into one ``flowopd: error: ...`` line on stderr and exit status 2. This module imports neither the store nor
gradio.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from .config.base import FieldInfo, config_class, config_kinds, read_config
from .config.eval import EvalConfig
from .config.pretrain import PretrainConfig
from .events import Progress
from .reward_names import TOKEN_ENV
from .world.prompts import PROMPT_SETS

log = logging.getLogger("flowopd")
EXAMPLES = {
    "pretrain": "flowopd pretrain --out runs/tiny-base --keep-checkpoints",
    "generate": 'flowopd generate --prompt \'a sign that says "TEA"\' --prompt "a photo of two circles" '
                "--seed 7 --out out/",
    "eval": "flowopd eval --json eval.json",
    "world check": "flowopd world check --json world.json",
    "world splits": "flowopd world splits",
    "world dataset": "flowopd world dataset --task text --n 256 --out data/text\n"
                     "then: flowopd train sft --data data/text --out runs/sft-text",
    "score": 'flowopd score --reward text --prompt \'a sign that says "TEA"\' out/000_seed7.png',
    "reward serve": "flowopd reward serve --reward ocr --port 18087\n"
                    'then train with {"rewards": {"remote:http://HOST:18087": 1.0}}',
    "reward check": "flowopd reward check http://127.0.0.1:18085   # is GenEval's reward server up?",
    "config": "flowopd config grpo   # every field of a GRPO config: type, default, allowed values, help",
    "runs": "flowopd runs submit pretrain --config pretrain.json --name base-8k",  # more in storage/cli.py
}


def _write_json(data: dict, path: str | None) -> None:
    text = json.dumps(data, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
        log.info("wrote %s", path)
    print(text)


def _field_help(cls: type, name: str) -> str:
    """A flag's help from the config field it sets (one text for the CLI, the UI and ``flowopd config``)."""
    info = cls.field_info(name)
    return f"{info.help} (default {info.default})".replace("%", "%%")


def _check_seed(seed: int, flag: str = "--seed") -> None:
    if seed < 0:
        raise ValueError(f"{flag} {seed} is invalid: use a whole number >= 0")


def cmd_pretrain(args: argparse.Namespace) -> None:
    flags = {name: getattr(args, name) for name in ("steps", "batch_size", "lr", "seed")
             if getattr(args, name) is not None}
    if args.keep_checkpoints:
        flags["keep_checkpoints"] = True
    cfg = read_config(args.config, PretrainConfig, flags)  # checked before torch loads
    from .pretrain import pretrain
    from .terminal import command_callback

    with command_callback(args, "pretrain", cfg.to_dict(), args.out) as callback:
        pretrain(cfg, args.out, callback=callback, resume=not args.no_resume)
    print(f"model written to {args.out}")


def cmd_generate(args: argparse.Namespace) -> None:
    _check_seed(args.seed)  # every argument is checked before torch and the model load (seconds)
    if args.scale < 1 or args.scale > 32:
        raise ValueError(f"--scale {args.scale} is out of range: use 1 to 32")
    if not 1 <= args.steps <= 1000:
        raise ValueError(f"--steps {args.steps} is out of range: use 1 to 1000 (20 is the protocol's)")
    if not 0 <= args.guidance <= 100:
        raise ValueError(f"--guidance {args.guidance} is out of range: use 0 to 100 (1.0 disables guidance)")
    from .world.splits import read_prompt_file

    prompts = list(args.prompt or [])
    if args.prompt_file:
        prompts += [r["prompt"] for r in read_prompt_file(args.prompt_file)]
    if not prompts or not all(p.strip() for p in prompts):
        raise ValueError("no prompt given (or an empty one): pass --prompt TEXT or --prompt-file FILE")
    from .models import load_model
    from .models.base import to_pil
    from .sampling import generate

    model = load_model(args.model)
    seeds = [args.seed + i for i in range(len(prompts))]
    images = generate(model, prompts, seeds=seeds, num_steps=args.steps, guidance=args.guidance)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (image, seed) in enumerate(zip(to_pil(images), seeds)):
        path = out / f"{i:03d}_seed{seed}.png"
        if args.scale > 1:
            image = image.resize((image.width * args.scale, image.height * args.scale), 0)  # nearest
        image.save(path)
        print(path)


def _task_rewards(pairs: list[str] | None) -> dict | None:
    """``["text=ocr", "prefer=pickscore:/m"]`` -> ``{"text": "ocr", "prefer": "pickscore:/m"}``."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        task, sep, reward = pair.partition("=")
        if not (sep and task.strip() and reward.strip()):
            raise ValueError(f"--task-rewards {pair!r} is invalid: give TASK=REWARD, e.g. text=ocr")
        out[task.strip()] = reward.strip()
    return out


def cmd_eval(args: argparse.Namespace) -> None:
    flags = {"num_steps": args.steps, "guidance": args.guidance, "images_per_prompt": args.images_per_prompt,
             "tasks": args.tasks, "task_rewards": _task_rewards(args.task_rewards)}
    cfg = read_config(args.config, EvalConfig, {k: v for k, v in flags.items() if v is not None})
    from .evaluate import evaluate_adapter
    from .models import load_model
    from .terminal import command_callback

    name = args.model or "built-in tiny-base"
    adapter = Path(args.adapter) if args.adapter else None
    if adapter is not None:
        name = f"{name} + adapter {args.adapter}"
    with command_callback(args, "eval", {**cfg.to_dict(), "model": args.model}, unit="task",
                          extra={"adapter": args.adapter}) as callback:
        callback.on_progress(Progress("eval", 0, len(cfg.tasks), 0.0, message="loading the model"))
        model = load_model(args.model)
        report = evaluate_adapter(model, adapter, cfg, model_name=name, callback=callback)
    _write_json(report, args.json)


def cmd_world_check(args: argparse.Namespace) -> None:
    _check_seed(args.seed)
    from .worldcheck import world_check

    _write_json(world_check(seed=args.seed), args.json)


def cmd_world_splits(args: argparse.Namespace) -> None:
    from .world.splits import PROMPT_DIR, write_splits

    for path in write_splits(Path(args.out) if args.out else PROMPT_DIR):
        print(path)


def cmd_world_dataset(args: argparse.Namespace) -> None:
    _check_seed(args.seed)
    from .world.dataset import write_dataset

    model = None
    if args.source == "model":
        from .models import load_model

        model = load_model(args.model)
    elif args.model:
        raise ValueError("--model is given but --source is render: add --source model to draw the images with it")
    folder = write_dataset(args.task, args.n, args.out, seed=args.seed, size=args.size, model=model,
                           steps=args.steps, guidance=args.guidance)
    what = "renders" if model is None else "samples"
    print(f"{args.n} {args.task} {what} with captions written to {folder}")


def cmd_score(args: argparse.Namespace) -> None:
    from PIL import Image

    from .rewards import get_reward
    from .rewards.text import target_of
    from .world.grammar import EXAMPLES, NotACompositionPrompt, check_compose_metadata, parse_compose_prompt

    fn = get_reward(args.reward)
    if args.metadata:
        try:
            meta = json.loads(args.metadata)
        except json.JSONDecodeError as err:
            raise ValueError(f"--metadata is not valid JSON ({err.msg} at character {err.pos}): pass one object, "
                             'e.g. \'{"include": [{"class": "circle", "count": 2}]}\'') from None
        if not isinstance(meta, dict):
            raise ValueError(f"--metadata must be a JSON object, got {type(meta).__name__}: "
                             'e.g. \'{"include": [{"class": "circle", "count": 2}]}\'')
        if args.reward == "compose":
            try:
                check_compose_metadata(meta)
            except ValueError as err:
                raise ValueError(f"--metadata: {err}") from None
    elif args.reward == "compose":
        try:
            meta = parse_compose_prompt(args.prompt)
        except NotACompositionPrompt as err:
            raise ValueError(f"--reward compose needs a composition prompt in --prompt, e.g. --prompt "
                             f"'{EXAMPLES[0]}' or '{EXAMPLES[1]}' (or the clauses in --metadata): {err}") from None
    else:
        meta = {}
    if args.reward == "text" and not target_of(args.prompt, meta):
        raise ValueError('the text reward needs a quoted target in --prompt, e.g. \'a sign that says "TEA"\'')
    images = []
    for name in args.images:
        try:
            images.append(Image.open(name).convert("RGB"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read image {name} ({err}): pass PNG or JPEG files") from None
    scores = fn(images, [args.prompt] * len(images), [meta] * len(images))
    for name, score in zip(args.images, scores):
        print(f"{score:.4f}\t{name}")


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port} is invalid: use a port number from 0 to 65535 (0 = any free port)")


def cmd_reward_serve(args: argparse.Namespace) -> None:
    _check_port(args.port)
    for flag, value in (("--max-request-mb", args.max_request_mb), ("--max-images", args.max_images),
                        ("--max-megapixels", args.max_megapixels), ("--timeout", args.timeout),
                        ("--max-connections", args.max_connections)):
        if not value > 0:
            raise ValueError(f"{flag} {value} is invalid: use a number > 0")
    from .rewards.serve import Limits, serve

    limits = Limits(max_request_bytes=int(args.max_request_mb * 2**20), max_images=args.max_images,
                    max_pixels=int(args.max_megapixels * 2**20), timeout_s=args.timeout,
                    max_connections=args.max_connections)
    serve(args.reward, args.host, args.port, limits=limits, token=args.token or os.environ.get(TOKEN_ENV) or None)


def cmd_reward_check(args: argparse.Namespace) -> None:
    from .rewards.remote import RemoteReward

    print(json.dumps(RemoteReward(args.url, timeout=args.timeout, retries=1).health()))


def _short(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _allowed(info: FieldInfo) -> str:
    return " | ".join(map(str, info.choices)) if info.choices else info.bounds()


def cmd_config(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    infos = config_class(args.kind).describe()
    if args.json:
        print(json.dumps([asdict(i) for i in infos], indent=2))
        return
    rows = [(i.name, i.type, _short(json.dumps(i.default)), _allowed(i), i.help) for i in infos]
    widths = [max(len(r[c]) for r in [("FIELD", "TYPE", "DEFAULT", "ALLOWED", "")] + rows) for c in range(4)]
    for row in [("FIELD", "TYPE", "DEFAULT", "ALLOWED", "HELP"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowopd", description="Flow-OPD Studio: multi-reward post-training "
                                     "of flow-matching text-to-image models (built-in tiny model by default).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name.split()[-1], help=help_text, description=help_text,
                              epilog=f"example: {EXAMPLES[name]}", formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("pretrain", cmd_pretrain, "Train the built-in tiny base model from a seed on rendered scenes.")
    p.add_argument("--out", default="runs/tiny-base", help="output folder (default: %(default)s)")
    p.add_argument("--config", help="JSON file with PretrainConfig fields")
    for flag, name, kind in (("--steps", "steps", int), ("--batch-size", "batch_size", int), ("--lr", "lr", float),
                             ("--seed", "seed", int)):
        p.add_argument(flag, dest=name, type=kind, help=_field_help(PretrainConfig, name))
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a train_state.pt")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="also keep the EMA model of every checkpoint in OUT/ema_stepNNNNNN/")

    model_help = "model folder or hub id (default: the built-in tiny model)"
    p = add("generate", cmd_generate, "Generate PNG images from prompts with the deterministic ODE sampler.")
    p.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    p.add_argument("--prompt-file", help="a .txt (one prompt per line) or .jsonl file of prompts")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed+i")
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (default %(default)s)")
    p.add_argument("--guidance", type=float, default=3.0, help="CFG scale (default %(default)s)")
    p.add_argument("--scale", type=int, default=1, help="enlarge PNGs by this factor (nearest neighbour)")
    p.add_argument("--model", help=model_help)

    p = add("eval", cmd_eval, "Run the fixed evaluation protocol and print (or write) the metrics JSON.")
    p.add_argument("--model", help=model_help)
    p.add_argument("--adapter", help="LoRA adapter folder (a trainer's OUT/adapter) to evaluate on the model")
    p.add_argument("--json", help="write the report to this path")
    p.add_argument("--config", help="JSON file of EvalConfig fields (num_steps, guidance, images_per_prompt, seed, "
                                    "batch_size, tasks, task_rewards, prompt_sets); the flags below override it")
    p.add_argument("--steps", type=int, help=_field_help(EvalConfig, "num_steps"))
    p.add_argument("--guidance", type=float, help=_field_help(EvalConfig, "guidance"))
    p.add_argument("--images-per-prompt", type=int, help=_field_help(EvalConfig, "images_per_prompt"))
    p.add_argument("--tasks", nargs="+", help=_field_help(EvalConfig, "tasks"))
    p.add_argument("--task-rewards", nargs="+", metavar="TASK=REWARD",
                   help="the reward that scores a task, e.g. text=ocr prefer=pickscore:/models/pickscore (default: "
                        "the model's: the tiny world's on the tiny model, the paper's on SD3)")

    world = sub.add_parser("world", help="The tiny world: checks, prompt splits and image sets.",
                           description="The tiny world: checks, prompt splits and image sets.")
    wsub = world.add_subparsers(dest="world_command", required=True, metavar="COMMAND")
    p = add("world check", cmd_world_check, "Score clean and degraded renders with every reward.", wsub)
    p.add_argument("--json", help="write the report to this path")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene layouts and noise")
    p = add("world splits", cmd_world_splits, "Regenerate the train/test prompt files from their fixed seed.", wsub)
    p.add_argument("--out", help="folder (default: the package's data/prompts)")
    p = add("world dataset", cmd_world_dataset, "Write clean renders of a task's train prompts as an image set for "
            "`train sft`: NAME.png with a same-name NAME.txt caption, and a metadata.jsonl of {\"file_name\", "
            "\"text\"} lines listing the same pairs (the folder convention of kohya_ss, fluxgym and diffusers; "
            "when a folder holds both, the reader takes metadata.jsonl and ignores the .txt files).", wsub)
    p.add_argument("--task", required=True, metavar="TASK[,TASK...]",
                   help=f"whose train prompts caption the images: {', '.join(PROMPT_SETS)} (mixed: a word and shapes "
                   "in one scene), or several joined by commas (their prompts in turn)")
    p.add_argument("--source", choices=("render", "model"), default="render",
                   help="render: clean renders that satisfy the prompts (a teacher's set); model: the model's own "
                   "ODE samples, the regularization set of `train sft --reg-data` (prior preservation)")
    p.add_argument("--model", help="with --source model: the model folder (default: the built-in tiny model)")
    p.add_argument("--steps", type=int, default=20, help="with --source model: ODE steps (default %(default)s)")
    p.add_argument("--guidance", type=float, default=3.0, help="with --source model: CFG scale (default %(default)s)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--out", required=True, help="an empty or new folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt order and the scene layouts")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default %(default)s: the built-in "
                   "model's; larger square sets are downscaled by the reader)")

    p = add("score", cmd_score, "Score image files with a registered reward.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--reward", required=True, help="compose, text, prefer or quality (the tiny world's), or a "
                   "real-image reward: ocr, pickscore[:FOLDER], aesthetic[:FOLDER], geneval[:URL], deqa[:URL], "
                   "remote:URL")
    p.add_argument("--prompt", required=True, help="the prompt the images were generated from")
    p.add_argument("--metadata", help='JSON record, e.g. \'{"include": [{"class": "circle", "count": 2}]}\'; '
                   "without it, compose reads the clauses from a composition --prompt")

    reward = sub.add_parser("reward", help="Reward servers: serve a reward over HTTP, check a server.",
                            description="Reward servers: serve a reward over HTTP, check a server.")
    rsub = reward.add_subparsers(dest="reward_command", required=True, metavar="COMMAND")
    p = add("reward serve", cmd_reward_serve, "Serve a reward over HTTP until interrupted, for runs that name it "
            "remote:http://HOST:PORT: POST /compute takes {\"images\": [base64 PNG], \"prompts\": [...], "
            "\"metadata\": [...]} and answers {\"scores\": [...]}; GET /health answers {\"status\": \"ok\"}.", rsub)
    p.add_argument("--reward", required=True, help="the reward to serve: any name `score --reward` takes")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 serves "
                   "other machines: give it a --token, and keep it on a trusted network)")
    p.add_argument("--port", type=int, default=18087, help="port (default %(default)s)")
    p.add_argument("--token", help=f"a secret /compute requires as Authorization: Bearer TOKEN (clients: "
                   f"remote:URL?token=TOKEN or ${TOKEN_ENV}; default: ${TOKEN_ENV}, else none)")
    p.add_argument("--max-request-mb", type=float, default=64, help="largest request body in MiB (default "
                   "%(default)s); larger: HTTP 413")
    p.add_argument("--max-images", type=int, default=256, help="images per request (default %(default)s)")
    p.add_argument("--max-megapixels", type=float, default=64, help="decoded pixels per request in Mi (default "
                   "%(default)s: 256 images of 512 px)")
    p.add_argument("--timeout", type=float, default=30, help="seconds a connection may stay silent (default "
                   "%(default)s)")
    p.add_argument("--max-connections", type=int, default=8, help="requests served at once; one more gets HTTP 503 "
                   "(default %(default)s)")
    p = add("reward check", cmd_reward_check, "Ask a reward server's /health and print its JSON answer.", rsub)
    p.add_argument("url", help="the server's address, e.g. http://127.0.0.1:18085")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default %(default)s)")

    p = add("config", cmd_config, "Print the fields of a config kind: type, default, allowed values and help.")
    p.add_argument("kind", choices=config_kinds(), metavar="KIND", help=f"one of {', '.join(config_kinds())}")
    p.add_argument("--json", action="store_true", help="print the descriptions as JSON (for scripts and forms)")

    from .methods.cli import register as register_trainers  # cheap: torch and the trainers load in the handlers

    register_trainers(sub)
    from .reproduce.cli import register as register_reproduce  # cheap: the benchmark loads in its handler

    register_reproduce(sub)
    from .bench.cli import register as register_bench  # cheap: torch and the benchmark load in its handler

    register_bench(sub)
    from .memplan.cli import register as register_plan  # cheap: the plan reads configs, no torch

    register_plan(sub)
    return parser
