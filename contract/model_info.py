"""What the device needs to know about a generation's ONNX file, read from the file alone.

``ModelInfo.from_onnx(path)`` returns the input/output names and shapes, the labels, the preprocessing spec
the host trained with and the genome, all from the ONNX ``metadata_props`` (docs/architecture.md).

The file is read with a small protobuf wire-format reader rather than the ``onnx`` package: a Jetson with
TensorRT has no reason to carry ``onnx`` (and its protobuf pins) just to read six fields, and a reader that
walks the bytes itself can say exactly why a file is not an ONNX model.
"""
import hashlib
import json
import os
import re

from contract.errors import ContractError
from contract.generation_files import LABELS_TXT, MODEL_ONNX
from contract.preprocess import METADATA_KEY, PreprocessSpec

#: The ONNX ``metadata_props`` keys of a generation: host/evolve/export.py writes them, :class:`ModelInfo` reads them
#: (the preprocessing spec's key, "preprocess", is contract.preprocess.METADATA_KEY).
LABELS_KEY = "labels"          # JSON list of str, one per output
GENOME_KEY = "genome"          # JSON of the genome (host/evolve/genome.py)
GENERATION_KEY = "generation"  # the generation number, as text
PRODUCER_KEY = "producer"      # "squishednets host-evolve"
RUN_KEY = "run"                # a run's name, where an exporter states one (host-evolve does not: device/serve.py
                               # reads it from the path RUN/gen-XX/model.onnx)
PRODUCER = "squishednets host-evolve"

#: ONNX TensorProto.DataType values this project meets.
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64",
              16: "bfloat16"}


class ModelInfo(object):
    """A generation's ONNX as the device sees it. Build with :meth:`from_onnx`.

    Attributes: ``path``, ``sha256``, ``labels`` (list of str), ``spec`` (PreprocessSpec), ``spec_source``
    ("metadata" or "default"), ``genome`` (dict or None), ``generation`` (int or None), ``num_classes``,
    ``input_name``, ``input_shape`` (tuple; the batch dim is None when dynamic), ``input_dtype``,
    ``output_name``, ``output_shape``, ``opsets`` ({domain: version}), ``metadata`` (all metadata_props),
    ``output_kind`` (OUTPUT_KINDS: what the output holds) and ``output_why`` (how that was found).
    """

    def __init__(self, path, sha256, input_name, input_shape, input_dtype, output_name, output_shape,
                 labels, spec, spec_source, genome, generation, opsets, metadata, ir_version,
                 output_kind="logits", output_why="assumed"):
        self.path = path
        self.sha256 = sha256
        self.input_name = input_name
        self.input_shape = input_shape
        self.input_dtype = input_dtype
        self.output_name = output_name
        self.output_shape = output_shape
        self.labels = labels
        self.spec = spec
        self.spec_source = spec_source
        self.genome = genome
        self.generation = generation
        self.opsets = opsets
        self.metadata = metadata
        self.ir_version = ir_version
        self.output_kind = output_kind
        self.output_why = output_why
        self.output_note = None  # which of several outputs was taken as the scores, when there were several
        self.output_names = [output_name]
        self.external_data = []  # side files holding its weights (model.onnx.data), named by the graph
        self.quantized = False  # explicitly quantized (Q/DQ nodes)

    @property
    def fixed_batch(self):
        """The batch size the input is fixed to (an int), or None when the batch dimension is dynamic."""
        return self.input_shape[0]

    @property
    def num_classes(self):
        return len(self.labels)

    def to_dict(self):
        return {"path": self.path, "sha256": self.sha256, "input_name": self.input_name,
                "input_shape": list(self.input_shape), "input_dtype": self.input_dtype,
                "output_name": self.output_name, "output_shape": list(self.output_shape),
                "num_classes": self.num_classes, "labels": list(self.labels), "preprocess": self.spec.to_dict(),
                "preprocess_source": self.spec_source, "genome": self.genome, "generation": self.generation,
                "opsets": dict(self.opsets), "ir_version": self.ir_version, "output_kind": self.output_kind}

    def __repr__(self):
        return "ModelInfo({!r}, input {} {}, {} classes)".format(self.path, self.input_name, self.input_shape,
                                                                self.num_classes)

    @classmethod
    def from_onnx(cls, path, output_name=None):
        """Read and check ``path``; raise ContractError naming the file and the fix when it cannot be used.
        ``output_name``: the graph output that holds the class scores (``--output-blob``); by default the only
        one, or of several the one that can be scores (:func:`choose_scores_output`), said in ``output_note``."""
        path = os.path.abspath(str(path))
        if not os.path.exists(path):
            raise ContractError("model {} does not exist: give the path of a generation's {} "
                              "(RUN/gen-XX/{}) or a host-serve URL".format(path, MODEL_ONNX, MODEL_ONNX))
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, MODEL_ONNX)):
                path = os.path.join(path, MODEL_ONNX)
            else:
                raise ContractError("model {} is a folder without {}: give the .onnx file".format(path, MODEL_ONNX))
        with open(path, "rb") as handle:
            data = handle.read()
        model = _read_model(data, path)
        return cls._from_parsed(path, model_identity(path, data, model["graph"]["external"]), model, output_name)

    @classmethod
    def _from_parsed(cls, path, sha256, model, output_name=None):
        graph = model["graph"]
        initializer_names = set(graph["initializers"])
        inputs = [value for value in graph["inputs"] if value["name"] not in initializer_names]
        if len(inputs) != 1:
            raise ContractError("model {} has {} inputs ({}); the device runs image classifiers with one NCHW "
                              "input (export with host-evolve)".format(
                                  path, len(inputs), ", ".join(v["name"] for v in inputs) or "none"))
        if len(graph["outputs"]) < 1:
            raise ContractError("model {} has no graph output".format(path))
        given = inputs[0]
        output, output_note = choose_scores_output(path, graph["outputs"], output_name)
        shape = given["shape"]
        if given["dtype"] not in ("float32", "float16") or shape is None or len(shape) != 4 \
                or shape[1] not in (1, 3) or not all(isinstance(d, int) and d >= 8 for d in shape[2:]):
            raise ContractError("model {}: input {!r} is {} {}, not an NCHW image batch (float, N x 3 x H x W, or "
                              "N x 1 x H x W for greyscale, with fixed H, W >= 8); the device runs image "
                              "classifiers like those host-evolve exports".format(
                                  path, given["name"], given["dtype"], _shape_text(shape)))
        input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
        out_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in (output["shape"] or ()))
        metadata = model["metadata"]
        labels = _labels(path, metadata, out_shape)
        spec_source = "metadata"
        if METADATA_KEY in metadata:
            spec = PreprocessSpec.from_json(metadata[METADATA_KEY])
            if (spec.height, spec.width) != tuple(input_shape[2:]):
                raise ContractError("model {}: its preprocess metadata says {}x{} but its input is {}x{}; the file "
                                  "was edited after export, export it again".format(
                                      path, spec.height, spec.width, input_shape[2], input_shape[3]))
            if spec.channels != input_shape[1]:
                raise ContractError("model {}: its preprocess metadata makes {} channel(s) ({}) but its input takes "
                                  "{}; export it again".format(path, spec.channels, spec.color, input_shape[1]))
        else:  # a foreign ONNX: jetson-inference's defaults at the input size (grey for a 1-channel input)
            spec = PreprocessSpec(input_shape[2], input_shape[3], color="GRAY" if input_shape[1] == 1 else "RGB")
            spec_source = "default"
        genome = None
        if GENOME_KEY in metadata:
            try:
                genome = json.loads(metadata[GENOME_KEY])
            except ValueError:
                raise ContractError("model {}: its genome metadata is not JSON; export it again".format(path))
        generation = None
        if metadata.get(GENERATION_KEY, "").strip().lstrip("-").isdigit():
            generation = int(metadata[GENERATION_KEY])
        output_kind, output_why = _output_kind(graph["producers"], output["name"], metadata)
        info = cls(path, sha256, given["name"], input_shape, given["dtype"], output["name"], out_shape, labels,
                   spec, spec_source, genome, generation, model["opsets"], metadata, model["ir_version"],
                   output_kind, output_why)
        info.output_note = output_note
        info.output_names = [value["name"] for value in graph["outputs"]]
        info.external_data = list(graph["external"])  # side files holding its weights (model.onnx.data)
        # explicitly quantized: Q/DQ nodes carry the INT8 scales (TensorRT builds them as INT8, no calibrator)
        info.quantized = bool(graph["op_types"] & {"QuantizeLinear", "DequantizeLinear"})
        return info


def external_data_of(data, path="model"):
    """The side files a model's graph keeps its weights in (``["model.onnx.data"]``), read from its bytes; [] for a
    model whole in one file. ContractError when ``data`` is not an ONNX model."""
    return list(_read_model(data, path)["graph"]["external"])


def model_identity(path, data, side_files):
    """A model's sha256: of its file's bytes, and where its weights live in side files (``onnx.save(...,
    save_as_external_data=True)``: model.onnx + model.onnx.data) of those bytes followed by each side file's, in the
    order the graph first names them -- two models with other weights never share one. ContractError when a side
    file is missing or outside the model's folder."""
    digest = hashlib.sha256(data)
    folder = os.path.dirname(os.path.abspath(path))
    for name in side_files:
        side = os.path.normpath(os.path.join(folder, name))
        if os.path.dirname(side) != folder and not side.startswith(folder + os.sep):
            raise ContractError("model {} names weights outside its folder ({}); keep model and data files together"
                                .format(path, name))
        try:
            with open(side, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except (IOError, OSError) as error:
            raise ContractError("model {} keeps its weights in {}, which cannot be read ({}); copy the model with "
                                "its data file(s)".format(path, side, getattr(error, "strerror", None) or error))
    return digest.hexdigest()


def choose_scores_output(path, outputs, wanted=None):
    """(the graph output that holds the class scores, a note saying which of several was taken, or None).

    ``wanted`` (``--output-blob``, jetson-inference's ``--output_blob``) names it, or ContractError listing the
    outputs. Otherwise the only output; of several (a Custom Vision export: ``classLabel``, an int64 ArgMax
    index, then ``loss``, the probabilities), the first floating-point one of rank 2 with more than one class."""
    described = ", ".join("{} {} {}".format(v["name"], v["dtype"], _shape_text(v["shape"])) for v in outputs)
    if wanted is not None:
        for value in outputs:
            if value["name"] == wanted:
                return value, None
        raise ContractError("model {} has no output {!r}; its outputs are {}: give one of them to "
                            "--output-blob".format(path, wanted, described))
    if len(outputs) == 1:
        return outputs[0], None

    def scores(value):
        shape = value["shape"] or ()
        classes = shape[-1] if shape else None
        return (value["dtype"] in ("float32", "float16", "float64") and len(shape) == 2
                and not (isinstance(classes, int) and classes == 1))
    chosen = next((value for value in outputs if scores(value)), outputs[0])
    return chosen, ("model {} has {} outputs ({}): reading {!r} as the class scores (--output-blob NAME picks "
                    "another)".format(os.path.basename(path), len(outputs), described, chosen["name"]))


#: What a classifier's output holds: raw scores (host-evolve's models, most exports), probabilities already (a
#: graph ending in Softmax or Sigmoid), or log-probabilities (LogSoftmax). The device turns each into
#: probabilities its own way (device/loop.py), so a foreign model's confidences are not softmaxed twice.
OUTPUT_KINDS = ("logits", "probabilities", "log_probabilities")
#: The metadata key a model may state its output kind under (host-evolve writes none: its models give logits).
OUTPUT_KIND_KEY = "output_kind"
_PASS_THROUGH = ("Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Cast", "Transpose")
_ENDINGS = {"Softmax": "probabilities", "Sigmoid": "probabilities", "LogSoftmax": "log_probabilities"}


def generation_metadata(labels, spec, genome_json, generation, run=None):
    """The ``metadata_props`` of a generation's ONNX (str -> str), what :meth:`ModelInfo.from_onnx` reads back:
    ``labels`` (list of str), ``spec`` (PreprocessSpec), ``genome_json`` (str), ``generation`` (int), and ``run``
    (a run's name) only when given: host-evolve gives none, so that equal weights make byte-equal files
    whatever folder they were written in (resume and two-process runs are checked by sha256)."""
    metadata = {LABELS_KEY: json.dumps(list(labels)), METADATA_KEY: spec.to_json(), GENOME_KEY: genome_json,
                GENERATION_KEY: str(int(generation)), PRODUCER_KEY: PRODUCER}
    if run is not None:
        metadata[RUN_KEY] = str(run)
    return metadata


def _output_kind(producers, output_name, metadata):
    """(kind, why): from the metadata when it says, else from the op that makes the output (through reshapes
    and casts), else logits."""
    stated = metadata.get(OUTPUT_KIND_KEY)
    if stated in OUTPUT_KINDS:
        return stated, "its metadata says so"
    name = output_name
    for _ in range(8):
        op_type, source = producers.get(name, ("", None))
        if op_type in _ENDINGS:
            return _ENDINGS[op_type], "its graph ends in {}".format(op_type)
        if op_type not in _PASS_THROUGH or source is None:
            break
        name = source
    return "logits", "its graph does not end in Softmax, LogSoftmax or Sigmoid"


def _shape_text(shape):
    if shape is None:
        return "of unknown shape"
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def _labels(path, metadata, out_shape):
    classes = out_shape[1] if len(out_shape) == 2 else None
    labels = None
    if LABELS_KEY in metadata:
        try:
            labels = [str(label) for label in json.loads(metadata[LABELS_KEY])]
        except (ValueError, TypeError):
            raise ContractError("model {}: its labels metadata is not a JSON list; export it again".format(path))
    else:
        beside = os.path.join(os.path.dirname(path), LABELS_TXT)
        if os.path.isfile(beside):
            labels = read_labels_txt(beside)
    if labels is None:
        if classes is None:
            raise ContractError("model {}: no labels in its metadata or beside it ({}) and its output "
                              "shape {} does not give the class count".format(path, LABELS_TXT, _shape_text(out_shape)))
        labels = ["class {}".format(i) for i in range(classes)]
    if classes is not None and classes != len(labels):
        raise ContractError("model {}: {} labels but {} outputs; the labels belong to another model".format(
            path, len(labels), classes))
    return labels


_SYNSET = re.compile(r"^n\d{8}\s+")


def read_labels_txt(path):
    """The labels of a labels.txt beside a model (one per line), as jetson-inference's imagenet reads them:
    UTF-8 (a byte-order mark stripped, whatever the locale), any line ending, blank lines skipped, and a
    leading ImageNet synset id ("n01440764 tench") dropped when every line has one. ContractError naming the
    file when it is not UTF-8."""
    try:
        with open(path, "r", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise ContractError("labels file {} is not UTF-8 text ({} at byte {}); save it as UTF-8".format(
            path, error.reason, error.start))
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if lines and all(_SYNSET.match(line) for line in lines):
        lines = [_SYNSET.sub("", line, count=1).strip() for line in lines]
    return lines


# -- protobuf wire format: just enough of onnx.proto to read a model's interface and metadata ----------------

class _NotProtobuf(Exception):
    pass


def _varint(data, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _NotProtobuf("truncated varint at byte {}".format(pos))
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """Yield (field number, wire type, value) of one message; value is an int or a memoryview."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _NotProtobuf("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        else:
            raise _NotProtobuf("wire type {} (groups are not used by ONNX)".format(wire))
        if pos > end:
            raise _NotProtobuf("a field runs past the end of the data")
        yield number, wire, value


def _text(view):
    return bytes(view).decode("utf-8", "replace")


def _signed(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _value_info(data):
    info = {"name": "", "dtype": None, "shape": None}
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            info["name"] = _text(value)
        elif number == 2 and wire == 2:  # TypeProto
            for t_number, t_wire, t_value in _fields(value):
                if t_number == 1 and t_wire == 2:  # TypeProto.Tensor
                    for f_number, f_wire, f_value in _fields(t_value):
                        if f_number == 1 and f_wire == 0:
                            info["dtype"] = ELEM_TYPES.get(f_value, "type {}".format(f_value))
                        elif f_number == 2 and f_wire == 2:
                            info["shape"] = _shape(f_value)
    return info


def _shape(data):
    dims = []
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            dim = None
            for d_number, d_wire, d_value in _fields(value):
                if d_number == 1 and d_wire == 0:
                    dim = _signed(d_value)
                elif d_number == 2 and d_wire == 2:
                    dim = _text(d_value)  # a symbolic size such as "batch"
            dims.append(dim)
    return dims


def _string_entry(data):
    """(key, value) of a StringStringEntryProto (field 1 key, field 2 value): metadata_props, external_data."""
    key, text = "", ""
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            key = _text(value)
        elif number == 2 and wire == 2:
            text = _text(value)
    return key, text


def _graph(data):
    graph = {"inputs": [], "outputs": [], "initializers": [], "nodes": 0, "producers": {}, "external": [],
             "op_types": set()}
    for number, wire, value in _fields(data):
        if wire != 2:
            continue
        if number == 1:
            graph["nodes"] += 1
            op_type, inputs, outputs = "", [], []
            for n_number, n_wire, n_value in _fields(value):
                if n_wire != 2:
                    continue
                if n_number == 1:
                    inputs.append(_text(n_value))
                elif n_number == 2:
                    outputs.append(_text(n_value))
                elif n_number == 4:
                    op_type = _text(n_value)
            graph["op_types"].add(op_type)
            for name in outputs:  # which node makes each tensor: the output convention is read from it
                graph["producers"][name] = (op_type, inputs[0] if inputs else None)
        elif number == 5:  # TensorProto: its name (field 8) and where its data lives (13: external_data)
            for t_number, t_wire, t_value in _fields(value):
                if t_number == 8 and t_wire == 2:
                    graph["initializers"].append(_text(t_value))
                elif t_number == 13 and t_wire == 2:
                    key, text = _string_entry(t_value)
                    if key == "location" and text not in graph["external"]:
                        graph["external"].append(text)
        elif number == 11:
            graph["inputs"].append(_value_info(value))
        elif number == 12:
            graph["outputs"].append(_value_info(value))
    return graph


def _read_model(data, path):
    """Parse the ModelProto fields the device uses; ContractError when ``data`` is not an ONNX model."""
    not_onnx = ("model {} is not an ONNX model ({{}}); give the {} that host-evolve exported "
                "(RUN/gen-XX/{})".format(path, MODEL_ONNX, MODEL_ONNX))
    if not data:
        raise ContractError(not_onnx.format("the file is empty"))
    view = memoryview(data)
    model = {"ir_version": None, "graph": None, "opsets": {}, "metadata": {}}
    try:
        for number, wire, value in _fields(view):
            if number == 1 and wire == 0:
                model["ir_version"] = value
            elif number == 7 and wire == 2:
                model["graph"] = _graph(value)
            elif number == 8 and wire == 2:
                domain, version = "", None
                for o_number, o_wire, o_value in _fields(value):
                    if o_number == 1 and o_wire == 2:
                        domain = _text(o_value)
                    elif o_number == 2 and o_wire == 0:
                        version = o_value
                model["opsets"][domain or "ai.onnx"] = version
            elif number == 14 and wire == 2:
                key, text = _string_entry(value)
                model["metadata"][key] = text
    except _NotProtobuf as error:
        raise ContractError(not_onnx.format("it does not parse as protobuf: {}; a truncated download or another "
                                          "kind of file".format(error)))
    if model["ir_version"] is None or not 1 <= model["ir_version"] <= 100 or model["graph"] is None:
        raise ContractError(not_onnx.format("no ONNX ir_version and graph in it"))
    if not model["graph"]["outputs"]:
        raise ContractError(not_onnx.format("its graph has no outputs"))
    return model
