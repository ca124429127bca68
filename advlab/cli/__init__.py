"""The ``advlab`` command line."""
