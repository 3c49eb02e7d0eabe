"""Reference runners that only the tests use: qonnx's own executor (the reference the
onnxruntime QONNX runner of bibench.export.qonnx is held to), OpenVINO and onnxruntime
predictions of a written file, and a count of a QONNX file's BipolarQuant nodes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
from torch import Tensor, nn

from bibench.evaluation.predict import predict
from bibench.export.onnx import Parity, logit_parity, ort_predict
from bibench.export.qonnx import QONNX_DOMAIN, _ir_mismatch
from bibench.latency.timing import openvino_compile, ort_session


def count_bipolar_quant(path: str | Path) -> int:
    """BipolarQuant nodes in a QONNX file (two per binarized layer: input and weights)."""
    graph = onnx.load(str(path)).graph
    return sum(n.op_type == "BipolarQuant" and n.domain == QONNX_DOMAIN for n in graph.node)


def _fold_constant_and_identity_nodes(graph) -> None:
    """Constant nodes become initializers and Identity nodes are bypassed, in place.

    qonnx's executor runs a graph node by node, each standard node in an onnxruntime session of
    its own; the exporter's Constant and Identity nodes are a third of a transformer's graph and
    carry no computation (MiniLM: 891 -> 611 nodes, half the check's time)."""
    import onnx

    kept, alias = [], {}
    for node in graph.node:
        standard = node.domain in ("", "ai.onnx")
        if standard and node.op_type == "Constant" and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        elif standard and node.op_type == "Identity":
            alias[node.output[0]] = node.input[0]
        else:
            kept.append(node)

    def source(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = source(name)
    outputs = {o.name for o in graph.output}
    kept += [onnx.helper.make_node("Identity", [source(name)], [name])
             for name in alias if name in outputs]  # graph outputs keep their names
    del graph.node[:]
    graph.node.extend(kept)


def _indexed_model(model):
    """qonnx's ModelWrapper whose shape lookups use an index of the graph's value infos.

    qonnx looks a tensor's shape up by scanning every input, output and value info, for each
    tensor of each node: quadratic in the graph size, seconds per check of a 1,000-node graph.
    The index answers the same lists; it is rebuilt after every transformation and follows
    set_tensor_shape, so it never serves a shape the graph no longer has.
    """
    from qonnx.core.modelwrapper import ModelWrapper

    class IndexedModel(ModelWrapper):
        _shape_index: dict[str, list[int]] | None = None

        def _index(self) -> dict[str, list[int]]:
            if self._shape_index is None:
                graph = self._model_proto.graph
                infos = [*graph.input, *graph.output, *graph.value_info]
                if len({v.name for v in infos}) != len(infos):
                    raise ValueError("a tensor of the QONNX graph has several value infos")
                self._shape_index = {
                    v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in infos}
            return self._shape_index

        def get_tensor_shape(self, tensor_name: str, fix_missing_init_shape: bool = False
                             ) -> list[int] | None:
            index = self._index()
            if tensor_name in index:
                return list(index[tensor_name])
            shape = super().get_tensor_shape(tensor_name, fix_missing_init_shape)
            if shape is not None and fix_missing_init_shape:  # now has a value info
                index[tensor_name] = list(shape)
            return shape

        def set_tensor_shape(self, tensor_name, tensor_shape, dtype=None) -> None:
            self._shape_index = None
            if dtype is None:
                super().set_tensor_shape(tensor_name, tensor_shape)
            else:
                super().set_tensor_shape(tensor_name, tensor_shape, dtype)

        def graph_changed(self) -> None:
            """Drop the index after editing the graph's protobuf directly."""
            self._shape_index = None

        def transform(self, *args, **kwargs):
            """The transformed model, indexed too (qonnx's passes return a plain wrapper)."""
            self._shape_index = None
            return IndexedModel(super().transform(*args, **kwargs).model)

    return IndexedModel(model)


def _static_value(model, node) -> list[np.ndarray] | None:
    """The outputs of a standard node computable now: every input a known constant, or a
    Shape of a tensor whose shape inference made static; None otherwise."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    if node.domain not in ("", "ai.onnx") or node.op_type in ("RandomNormal", "RandomUniform",
                                                               "RandomNormalLike", "Multinomial"):
        return None
    known = model.bibench_initializers
    feeds = {}
    for name in node.input:
        if name in known:
            feeds[name] = numpy_helper.to_array(known[name])
        elif node.op_type == "Shape" and name:
            shape = model.get_tensor_shape(name)
            if not shape or any(not isinstance(d, int) or d <= 0 for d in shape):
                return None
            feeds[name] = np.zeros(shape, dtype=np.float32)  # only its shape is read
        elif name:
            return None
    return ReferenceEvaluator(node).run(None, feeds)


def _fold_static_shapes(model) -> None:
    """Shape arithmetic becomes initializers, in place, once the input shape is fixed.

    The exporter writes each dynamic reshape as a chain Shape -> Gather -> Unsqueeze ->
    Concat; qonnx's executor costs grow with the square of the node count (it scans the graph
    for every node), and these chains are half of a binarized DFSMN's 1,200 nodes (an XNOR
    cell's check: 14 s). They are evaluated once with onnx's reference evaluator; every node
    that computes on data still runs in qonnx's executor."""
    from onnx import numpy_helper

    graph, kept = model.graph, []
    model.bibench_initializers = {i.name: i for i in graph.initializer}
    for node in graph.node:  # topologically sorted
        values = _static_value(model, node)
        if values is None:
            kept.append(node)
            continue
        for name, value in zip(node.output, values, strict=True):
            graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            model.bibench_initializers[name] = graph.initializer[-1]
    del graph.node[:]
    graph.node.extend(kept)
    used = {n for node in kept for n in (*node.input, *node.output)}
    initializers = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    value_info = [v for v in graph.value_info if v.name in used]
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    model.graph_changed()


def qonnx_predict(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run a QONNX file with qonnx's reference executor (custom ops in numpy, standard nodes
    one by one in onnxruntime): an engine independent of PyTorch and of our exporter."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = _indexed_model(str(path))
    graph = model.graph
    _fold_constant_and_identity_nodes(graph)
    inp, out = graph.input[0].name, graph.output[0].name
    model.set_tensor_shape(inp, list(x.shape))
    for vi in graph.output:  # the batch dim of the outputs follows from the input
        vi.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    model.graph_changed()
    # The file has no quantization annotations (every tensor is FLOAT32 to qonnx), so its
    # per-node rounding to annotated types is a no-op, and the graph is already sorted with
    # unique names: skipping both (and the deep copy) takes a MiniLM cell from 14.5 to 9.5 s,
    # with identical outputs.
    sanitize = os.environ.get("SANITIZE_QUANT_TENSORS")
    os.environ["SANITIZE_QUANT_TENSORS"] = "0"
    try:
        with warnings.catch_warnings():
            # qonnx warns where shape inference left a run-time-shaped tensor (XNOR's K) empty
            warnings.simplefilter("ignore")
            model = model.transform(InferShapes(), make_deepcopy=False, cleanup=False)
            _fold_static_shapes(model)
            return execute_onnx(model, {inp: np.ascontiguousarray(x)})[out]
    except Exception as err:
        if "Unsupported model IR version" not in str(err):
            raise
        raise RuntimeError(_ir_mismatch(str(err))) from err
    finally:
        if sanitize is None:
            del os.environ["SANITIZE_QUANT_TENSORS"]
        else:
            os.environ["SANITIZE_QUANT_TENSORS"] = sanitize


def openvino_predict(path: str | Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Outputs of the compiled model on x (any batch size)."""
    compiled = openvino_compile(path, threads, batch=len(x))
    return np.asarray(compiled(np.ascontiguousarray(x))[0]).copy()


def check_parity(model: nn.Module, path: str | Path, x: Tensor, *, optimize: bool = True,
                 atol: float = 1e-3) -> Parity:
    """Compare onnxruntime's logits with PyTorch's on x."""
    ref = predict(model, x).numpy()
    return logit_parity(ref, ort_predict(ort_session(path, optimize=optimize), x), atol)
