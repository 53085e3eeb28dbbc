"""Export: the zipped adapter loads back to the same image, its model card, refused names and formats; the files
the app may serve; the results of the reproduction."""

from __future__ import annotations

import zipfile

import pytest

from flowopd_studio.services.export import ExportError, ModelCard, export_adapter
from flowopd_studio.services.files import safe_name, servable
from flowopd_studio.storage.errors import UnsafePath


def test_export_round_trip_zip_and_card(small_model, make_adapter, tmp_path):
    from flowopd.adapters import adapter_names, load_adapter, use_adapter
    from flowopd.sampling import generate

    source = make_adapter(small_model, tmp_path / "student", zero=False, seed=5)
    grid = tmp_path / "grid.png"
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(grid)
    card = ModelCard("my student", "small random", "student", "a test", None, ["compose", "text"],
                     {"lr": 1e-4}, {"compose": 0.5, "average": 0.6}, grid)
    before = set(adapter_names(small_model))
    result = export_adapter(source, tmp_path / "exports", card, model=small_model, name="my-student")
    assert result.verified and result.image_sha256
    assert set(adapter_names(small_model)) - before <= {n for n in adapter_names(small_model)
                                                         if n.startswith("studio_")}  # only the cache stays
    with zipfile.ZipFile(result.zip_path) as z:
        names = set(z.namelist())
    assert {"my-student/flowopd/pytorch_lora_weights.safetensors", "my-student/flowopd/adapter.json",
            "my-student/README.md", "my-student/comparison.png", "my-student/export.json"} <= names
    text = (result.folder / "README.md").read_text()
    for part in ("small random", "compose, text", "| 0.500 | 0.600 |", "comparison.png", '"lr": 0.0001', "Verified"):
        assert part in text
    # the exported folder, loaded by the library, draws the source adapter's image
    z = zipfile.ZipFile(result.zip_path)
    z.extractall(tmp_path / "unzipped")
    load_adapter(small_model, tmp_path / "unzipped/my-student/flowopd", "unzipped_check")
    load_adapter(small_model, source, "source_check")
    try:
        images = []
        for name in ("unzipped_check", "source_check"):
            with use_adapter(small_model, name):
                images.append(generate(small_model, ["a photo of a circle"], seeds=[9], num_steps=3))
        assert images[0].equal(images[1])
    finally:
        from flowopd.adapters import drop_adapter

        drop_adapter(small_model, "unzipped_check")
        drop_adapter(small_model, "source_check")


def test_export_refuses_bad_names_formats_and_the_base(small_model, make_adapter, tmp_path):
    from flowopd_studio.services.sources import base_source

    source = make_adapter(small_model, tmp_path / "a", zero=True)
    with pytest.raises(UnsafePath, match="not a plain name"):
        export_adapter(source, tmp_path / "exports", name="../escape")
    with pytest.raises(ExportError, match="choose from flowopd, diffusers, comfyui, peft, fused"):
        export_adapter(source, tmp_path / "exports", formats=("onnx",))
    with pytest.raises(ExportError, match="format 'comfyui' needs an SD3 base model; this adapter was trained on the "
                                          "built-in tiny model .*: use flowopd, peft or fused"):
        export_adapter(source, tmp_path / "exports", formats=("flowopd", "comfyui"))
    with pytest.raises(ExportError, match="base model has no adapter"):
        export_adapter(base_source("m"), tmp_path / "exports")
    assert not (tmp_path / "escape").exists()


def test_a_wrong_export_is_not_called_ready(small_model, make_adapter, tmp_path, monkeypatch):
    """A format whose file does not give the source's images fails the verification and leaves nothing."""
    from flowopd.adapters import load_adapter
    from flowopd_studio.services import export, export_formats

    other = make_adapter(small_model, tmp_path / "other", zero=False, seed=8)
    broken = export.ExportFormat(lambda src, dst, model: export_formats._write_flowopd(other, dst),
                                 export_formats.as_adapter(load_adapter), "broken")
    monkeypatch.setitem(export.FORMATS, "broken", broken)
    source = make_adapter(small_model, tmp_path / "a", zero=False, seed=7)
    with pytest.raises(ExportError, match="differs"):
        export_adapter(source, tmp_path / "exports", formats=("broken",), model=small_model, name="x")
    assert not (tmp_path / "exports" / "x").exists() and not (tmp_path / "exports" / "x.zip").exists()


@pytest.mark.parametrize("name", ["../x.png", "a/b.png", "..", ".hidden", "/etc/passwd", "a..b", ""])
def test_unsafe_file_names_are_refused(name):
    with pytest.raises(UnsafePath):
        safe_name(name)


def test_only_exports_and_samples_are_served(tmp_path):
    home = tmp_path / "home"
    for rel in ("exports/a.zip", "runs/r0123456789/samples/s.png", "runs/r0123456789/exports/e.zip",
                "runs/r0123456789/worker.log", "flowopd.db"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text("x")
    assert servable(home, home / "exports/a.zip")
    assert servable(home, home / "runs/r0123456789/samples/s.png")
    assert servable(home, home / "runs/r0123456789/exports/e.zip")
    for rel in ("runs/r0123456789/worker.log", "flowopd.db", "exports/../flowopd.db"):
        with pytest.raises(UnsafePath):
            servable(home, home / rel)


def test_committed_results_and_a_reproduce_runs_report(tmp_path):
    import json

    from flowopd_studio.services.results import DOCS, committed, committed_all, run_reports
    from flowopd_studio.storage.store import Store

    results = committed()
    assert results is not None and results.headers[-1] == "average"
    assert [row[0] for row in results.table][:2] == ["base", "teacher-compose"]
    assert results.plots and all(p.suffix == ".png" for p in results.plots)
    every = committed_all()
    assert every[0] == results and len(every) == 1 + len(list(DOCS.glob("results-tiny-*.json"))) >= 2
    assert all(r.title.startswith("earlier committed reproduction (docs/results-tiny-") for r in every[1:])
    with Store(tmp_path / "home") as store:
        run = store.create_run("reproduce", {"budget": "smoke"}, name="repro")
        folder = store.run_dir(run.id) / "reproduce"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"rows": {"opd": {"text": 0.8, "average": 0.7}}}))
        (folder / "report.md").write_text("# report")
        for f in ("results.json", "report.md"):
            store.add_artifact(run.id, "report", folder / f)
        assert run_reports(store) == []  # not finished yet
        store.db.execute("UPDATE runs SET status = 'finished' WHERE id = ?", [run.id])
        store.db.commit()
        [found] = run_reports(store)
    assert found.table[0][0] == "opd" and found.table[0][2] == "0.800" and found.report == "# report"


def test_the_results_report_has_no_link_the_app_cannot_serve():
    """The committed report's relative images and links point into the repository, which the app does not
    serve (they were broken images and 404s): images become notes (the plots are in the gallery), links paths."""
    import re

    from flowopd_studio.services.results import committed_all, report_for_app

    for results in committed_all():
        assert not re.search(r"\]\((?!https?://|#)[^)]+\)", results.report), results.title
    text = report_for_app("![opd](results-tiny/opd.png) see [the tuning](notes/opd-tuning.md), [x](https://a.b)",
                          "docs")
    assert text == ("*(plot `opd`: in the Plots gallery above)* see the tuning (`docs/notes/opd-tuning.md` in the "
                    "repository), [x](https://a.b)")
