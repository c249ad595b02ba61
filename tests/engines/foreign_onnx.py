"""Foreign classifiers made in the test: ONNX files that host-evolve did not export (no metadata), with the
input shape, batch, channels and output convention of the case at hand. GlobalAveragePool -> Flatten -> Gemm
(-> Softmax), opset 13, run by ONNX Runtime as they are."""
import numpy as np


def foreign_onnx(path, input_shape=("N", 3, 32, 32), classes=2, softmax=False, weights=None, dtype="float32",
                 input_name="data", output_name="prob", labels=None):
    """Write the model to ``path`` (str or Path) and return it as str; ``labels``: also a labels.txt beside it
    (a list of str, written as UTF-8 lines)."""
    import os
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    channels = input_shape[1]
    batch = input_shape[0]
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    np_dtype = np.float16 if dtype == "float16" else np.float32
    if weights is None:
        weights = np.arange(channels * classes, dtype=np.float32).reshape(channels, classes) / (channels * classes)
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "B"], ["logits" if softmax else output_name])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [output_name], axis=1))
    nodes[0].input[0] = input_name
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info(input_name, elem, list(input_shape))],
        [helper.make_tensor_value_info(output_name, elem, [batch, classes])],
        [numpy_helper.from_array(np.asarray(weights, np_dtype), "W"),
         numpy_helper.from_array(np.zeros(classes, np_dtype), "B")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    if labels is not None:
        with open(os.path.join(os.path.dirname(str(path)), "labels.txt"), "w", encoding="utf-8") as handle:
            handle.write("".join(label + "\n" for label in labels))
    return str(path)
