"""Which module trains which model. Imported lazily: a Keras run never imports torch.

Every trainer module has MODEL_ID, DEFAULT_GATE (a PromotionGate) and
train(options: TrainOptions) -> Candidate.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TRAINERS = {
    "breast-cancer": "training.breast_cancer",  # scikit-learn -> skl2onnx
    "breast-cancer-lite": "training.breast_cancer_lite",  # Keras MLP -> tf2onnx
    "skin-lesion": "training.skin_lesion",  # PyTorch CNN -> torch.onnx
    "chest-ct": "training.chest_ct",  # Keras CNN -> tf2onnx
}


def trainer(model_id: str) -> ModuleType:
    return importlib.import_module(TRAINERS[model_id])
