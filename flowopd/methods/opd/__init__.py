"""On-policy distillation (Flow-OPD, arXiv 2605.08063): the student samples its own SDE trajectories, each prompt
is routed to its task's teacher, and every step is supervised by the analytic KL between the student's and the
teacher's Gaussian transitions; Manifold Anchor Regularization adds the same term towards an anchor
(docs/method.md, "On-policy distillation").

``config`` (torch-free), ``routing``, ``loss`` and ``trainer``."""

from ...world.prompts import TASKS
from ..registry import Method, register_method
from .config import OPDConfig

METHOD = register_method(Method(
    kind="opd", config=OPDConfig, trainer="flowopd.methods.opd.trainer:train_opd",
    summary="On-policy distillation of the task teachers into the student, with MAR.",
    example="flowopd train opd --config opd.json --out runs/opd\n"
            'with opd.json = {"teachers": {"compose": "runs/teacher-compose/adapter", "text": '
            '"runs/teacher-text/adapter"}, "prompt_tasks": {"compose": 1.0, "text": 1.0}, '
            '"init": "runs/merge/adapter"}',
    teacher_source=False, adapter_fields={"teachers": (), "init": (), "mar_anchor": ("base", *TASKS)}))
