"""The cold start: the student's first LoRA from the teachers (docs/method.md, "Cold start").

``config`` (torch-free), ``merge`` (the exact delta merge and its variants) and ``trainer``
(:func:`~flowopd.coldstart.trainer.run_coldstart`: merge, merge-avg, sft on teacher samples, or none).
"""
