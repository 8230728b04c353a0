"""Continual learning over a stream of experiences: naive, EWC, LwF, experience replay, joint."""
