"""Model families. Importing this package registers every model in ``cifarctl.registry``.

One module per family; each variant is a short function decorated with
``@register_model``. To add a family, create its module and add it to the import below
(``tests/test_models.py`` then exercises its models without further changes).
"""

from cifarctl.models import (  # noqa: F401  (imported for their registrations)
    resnet,
    resnet_custom,
    s6,
    s8,
    s9,
    speedrun,
)
