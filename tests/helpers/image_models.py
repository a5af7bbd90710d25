"""A tiny hand-built ONNX image classifier (mean colour -> class) for fast serving
tests: no training, same contract as the real image models."""

from __future__ import annotations

import io

import numpy as np

from training.candidate import Candidate

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def colour_classifier_onnx(layout: str = "NCHW") -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    axes = [2, 3] if layout == "NCHW" else [1, 2]
    shape = ["batch", 3, 32, 32] if layout == "NCHW" else ["batch", 32, 32, 3]
    # Normalised channel means -> logits: each class is the channel it names, sharpened.
    weights = numpy_helper.from_array(np.eye(3, dtype=np.float32) * 8.0, "weights")
    axes_init = numpy_helper.from_array(np.asarray(axes, dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["means"], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weights, axes_init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def colour_candidate(model_id: str = "colour-test", layout: str = "NCHW") -> Candidate:
    return Candidate(
        model_id=model_id,
        description="test: mean colour",
        task="multiclass",
        classes=list(COLOURS),
        input_spec={
            "kind": "image",
            "input_name": "image",
            "height": 32,
            "width": 32,
            "channels": 3,
            "layout": layout,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        outputs={"probabilities": "probabilities", "probability_format": "probabilities"},
        onnx=colour_classifier_onnx(layout),
        metrics={"test_accuracy": 1.0},
        parity={"rows": 0},
        parity_limits={},
        estimator="hand-built",
        params={},
        framework={"onnx": "hand-built"},
        converter={"none": "0"},
        training_data={
            "name": "none",
            "source": "tests",
            "sha256": "0" * 64,
            "n_train": 0,
            "n_test": 0,
            "synthetic": True,
        },
    )


def image_bytes(colour: str = "red", size: tuple[int, int] = (64, 48), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, COLOURS[colour] if mode == "RGB" else 128).save(buffer, fmt)
    return buffer.getvalue()
