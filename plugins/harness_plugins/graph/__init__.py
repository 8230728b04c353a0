"""Graph neural networks for node classification."""
