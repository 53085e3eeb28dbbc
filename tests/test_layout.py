"""The run-folder names are defined once, in flowopd.layout, and every writer uses them."""

from __future__ import annotations

from pathlib import Path

from flowopd import layout


def test_path_helpers() -> None:
    run = Path("runs/x")
    assert layout.adapter_dir(run) == run / "adapter" and layout.checkpoint_dir(run) == run / "checkpoint"
    assert layout.samples_dir("runs/x") == run / "samples" and layout.exports_dir(run) == run / "exports"


def test_no_module_defines_the_names_again() -> None:
    root = Path(layout.__file__).resolve().parent.parent
    sources = [*root.glob("flowopd/**/*.py"), *root.glob("flowopd_studio/**/*.py"), *root.glob("benchmarks/**/*.py")]
    for path in sources:
        if path.name == "layout.py":
            continue
        text = path.read_text()
        for name in ("ADAPTER_DIR", "CHECKPOINT_DIR", "CURVE_FILE", "RESULT_FILE", "TRAIN_FILE"):
            assert f"{name} =" not in text, f"{path} defines {name} again: import it from flowopd.layout"
