import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from med_classifier.domain.errors import IntegrityError
from med_classifier.domain.inference import OnnxClassifier
from med_classifier.domain.manifest import Manifest, sha256_hex
from tests.helpers.models import breast_cancer_candidate, manifest_for


def sigmoid_model() -> bytes:
    """A 2-feature graph: p = sigmoid(x0 - x1), one output column (Keras-style)."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, -1.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["p"])],
        "sigmoid",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 1])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnx 1.23 defaults to IR 14, newer than onnxruntime 1.31 reads
    return model.SerializeToString()


def test_sigmoid_output_is_expanded_to_both_classes():
    onnx_bytes = sigmoid_model()
    base = manifest_for(breast_cancer_candidate())
    manifest = Manifest.model_validate(
        {
            **base.model_dump(),
            "input": {"kind": "tabular", "feature_names": ["a", "b"], "input_name": "x"},
            "outputs": {"probabilities": "p", "probability_format": "sigmoid_positive", "positive_index": 1},
            "onnx_sha256": sha256_hex(onnx_bytes),
            "onnx_bytes": len(onnx_bytes),
        }
    )
    classifier = OnnxClassifier(manifest, onnx_bytes)
    predictions, elapsed = classifier.predict(np.array([[3.0, 0.0], [0.0, 3.0]], dtype=np.float32))
    assert [p["label"] for p in predictions] == ["benign", "malignant"]
    assert predictions[0]["probabilities"]["benign"] == pytest.approx(1 / (1 + np.exp(-3)), rel=1e-6)
    assert elapsed >= 0


def test_graph_that_does_not_match_its_manifest_is_refused():
    candidate = breast_cancer_candidate()
    manifest = manifest_for(candidate)
    wrong_input = manifest.model_copy(update={"input": manifest.input.model_copy(update={"input_name": "x"})})
    with pytest.raises(IntegrityError, match="no input 'x'"):
        OnnxClassifier(wrong_input, candidate.onnx)
    with pytest.raises(IntegrityError, match="does not load"):
        OnnxClassifier(manifest, b"definitely not onnx")
    # Loads, but has 30 inputs where the manifest promises 3: the probe run fails.
    three = manifest.model_copy(update={"input": manifest.input.model_copy(update={"feature_names": ["a", "b", "c"]})})
    with pytest.raises(IntegrityError, match="probe run failed"):
        OnnxClassifier(three, candidate.onnx)
    assert onnx.load_from_string(candidate.onnx).graph.input[0].name == manifest.input.input_name
