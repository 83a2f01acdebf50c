"""cifarctl: train and understand CIFAR-10 classifiers from the terminal.

Importing this package must stay cheap: no torch here (``cifarctl --help`` relies on it).
"""

__version__ = "0.1.0"

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
