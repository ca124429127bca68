"""Built-in experiments; importing this package registers them."""

from advlab.experiments.builtin import demo, elbow, transfer  # noqa: F401
