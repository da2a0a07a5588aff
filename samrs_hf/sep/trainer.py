"""Where SEP training lived before #17; its public names now come from :mod:`.pretrain` (``SEPTrainer``,
``TrainArgs``), :mod:`.finetune` (``FinetuneArgs``, ``run_finetune``, ``finetune_model``) and
:mod:`.training` (``NonFiniteLossError``, ``build_optimizer``). Kept so ``samrs_hf.sep.trainer`` imports."""

from .finetune import FinetuneArgs, finetune_model, run_finetune
from .pretrain import SEPTrainer, TrainArgs
from .training import NonFiniteLossError, build_optimizer

__all__ = ["SEPTrainer", "TrainArgs", "FinetuneArgs", "run_finetune", "finetune_model", "NonFiniteLossError",
           "build_optimizer"]
