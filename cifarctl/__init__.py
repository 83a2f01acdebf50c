"""cifarctl: train and understand CIFAR-10 classifiers from the terminal.

Importing this package must stay cheap: no torch here (``cifarctl --help`` relies on it).
"""

__version__ = "0.1.0"

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

# Per-channel statistics of the CIFAR-10 train split (the original data set): the default
# ``data.normalize`` of a recipe and the colour of ``fill: mean``.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
