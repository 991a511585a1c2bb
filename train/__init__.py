"""Training experiments on top of the pack's real code path (Moving MNIST motion-module training)."""
