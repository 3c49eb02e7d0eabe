"""Object detectors (Faster R-CNN, SSD300) and their box operations, in plain PyTorch."""
