"""Built-in experiments; importing this package registers them."""

from advlab.experiments.builtin import demo, elbow, omari2024, transfer  # noqa: F401
