"""The ``rdsvend`` command line. Each area keeps its commands in its own module."""
