"""Export forms of a cell's model (plain ONNX, QONNX, OpenVINO binary), each checked against
PyTorch. Deployability is decided by trying to build and run a form."""
