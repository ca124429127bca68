"""Built-in experiments; importing this package registers them."""

from advlab.experiments.builtin import demo, elbow, omari2024, poison_cluster, transfer  # noqa: F401
