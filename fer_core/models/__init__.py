"""The networks (cnn3, ResNet18), their layer table, and checkpoints: weights with the metadata
that makes them self-describing, loaded with `weights_only=True`."""
