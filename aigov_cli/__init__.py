"""The ``aigov`` command line: thin Typer commands over the ``daemon`` library."""
