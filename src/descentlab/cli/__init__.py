"""The ``descentlab`` command line (nothing outside this package imports it)."""
