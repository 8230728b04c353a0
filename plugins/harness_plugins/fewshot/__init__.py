"""Episodic few-shot learning: prototypical networks, first-order MAML, baseline++ and a random encoder."""
