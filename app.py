"""Flow-OPD Studio's web app: ``python app.py`` serves it on the built-in tiny model (``--help`` for options)."""

from __future__ import annotations

import logging
import os


def main(argv: list[str] | None = None) -> None:
    from flowopd_studio.ui.launch import launch, options

    opts = options(argv)  # checked before anything heavy loads
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import torch

    # The app samples while workers train on the same cores: half of them (one on 2 cores) keeps its OpenMP
    # threads from fighting the workers' (measured on 2 cores: a compare grid of 6.3 s took 115 s with 2 threads).
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    from flowopd.models import load_model
    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.state import AppState

    name = opts.model or "built-in tiny-base"
    if opts.demo and opts.model and os.path.exists(opts.model):  # a read-only page shows no path of this machine
        name = os.path.basename(os.path.normpath(opts.model))
    state = AppState(load_model(opts.model), name, model_ref=opts.model, home=opts.home, demo=opts.demo)
    if opts.webhook is not None:
        from flowopd_studio.storage.notify import WEBHOOK_SETTING

        with state.store() as store:
            store.set_setting(WEBHOOK_SETTING, opts.webhook.strip())
    if opts.model is None:  # the built-in examples' teachers were trained on the built-in model
        from flowopd_studio.services.examples import register_builtin_teachers

        with state.store() as store:
            register_builtin_teachers(store)
    launch(build_app(state), opts)


if __name__ == "__main__":
    main()
