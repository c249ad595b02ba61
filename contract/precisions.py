"""The precision names every command and the engine cache use (TensorRT's builder modes)."""

PRECISIONS = ("fp32", "fp16", "int8")
