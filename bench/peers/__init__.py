"""Peer model servers the benchmark compares against, each serving the same SavedModel with TensorFlow alone.

They depend only on their own framework, numpy and TensorFlow (not on this project), and run in their own
virtual environments under bench/.peers when their dependencies clash with Ray's.
"""
