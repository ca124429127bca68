"""Built-in experiments; importing this package registers them."""

from advlab.experiments.builtin import (  # noqa: F401
    demo,
    elbow,
    mygdalis2020,
    omari2024,
    poison_cluster,
    transfer,
)
