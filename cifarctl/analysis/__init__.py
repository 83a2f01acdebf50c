"""Analysis: what a trained model or a set of runs says.

``inference`` (the one way to load a checkpoint and predict), ``evaluate``,
``misclassified``, ``gradcam``, ``layers`` (layer table and receptive fields) and
``compare`` (run folders). Plain functions returning data; ``cifarctl.ui`` draws them.
"""
