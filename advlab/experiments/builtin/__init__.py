"""Built-in experiments; importing this package registers them."""

from advlab.experiments.builtin import demo, elbow  # noqa: F401
