"""The ``fastpoly`` command line.

:mod:`.main` assembles the subcommands of :mod:`.sample`,
:mod:`.analysis` and :mod:`.poly`, and turns every user error into one line on stderr and exit code 2.
"""
