"""The demo (``make demo``, ``python -m demo``): an edge over the library and the Prefect project, like the CLI.

It lives next to ``flows/`` rather than inside ``saferails`` because it drives Prefect flows; the installed library
(``saferails``) never imports it. ``demo.run`` is the main scenario; ``demo.actions``, ``demo.runbooks``,
``demo.workflow`` and ``demo.outcomes`` are its parts.
"""
