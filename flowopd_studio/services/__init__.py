"""What the app's tabs do, as plain functions tested without Gradio.

* Models & teachers: the base model of new runs (:mod:`.base_models`), teachers defined, trained and listed
  (:mod:`.teachers`), LoRA import with format, rank, alpha, target and base checks (:mod:`.lora_import`), config
  forms from the configs' field descriptions (:mod:`.config_forms`).
* Distill: the plan of a distillation or of the whole pipeline and its queued runs (:mod:`.distill`), the
  pre-flight time and memory estimate (:mod:`.preflight`).
* Runs: the runs table, downsampled plot frames, teacher reference scores and pass marks (:mod:`.runs_view`).
* Compare, Export, Results: side-by-side grids from the same noise (:mod:`.compare`, :mod:`.grid`), verified
  LoRA export with a model card (:mod:`.export`), the reproduction results (:mod:`.results`), the built-in
  examples (:mod:`.examples`). Which adapters can be picked is :mod:`.sources`; adapters loaded onto the app's
  model are cached by :mod:`.adapter_cache`; which files may be written or served is :mod:`.files`.

May import ``flowopd`` and ``flowopd_studio.storage``; never gradio (the ``ui`` package wraps these; a test
checks it).
"""
