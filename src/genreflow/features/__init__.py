"""Log-mel features: the shared front-end, segmentation and the on-disk feature store."""
