"""host-serve: a run's models out to devices, their reports into the run's lineage.sqlite.

server (command line, socket, signals) -> app (the routes) -> auth (the token), bodies (request bodies and the
report model), served_run (the run as served), pages; guard bounds slow clients. It reads the run folder through
host/run/ and never imports host-evolve (host/evolve/): an import-linter contract in pyproject.toml.
"""
