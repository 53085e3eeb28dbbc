"""Flow-OPD Studio's web app: ``python app.py`` serves it on the built-in tiny model."""

from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(description="Flow-OPD Studio web app (Gradio).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    parser.add_argument("--model", help="model folder or hub id (default: the built-in tiny model)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from flowopd.models import load_model
    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.state import AppState

    state = AppState(load_model(args.model), args.model or "built-in tiny-base")
    build_app(state).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
