"""The run folder both programs read: its layout, its lineage.sqlite (all SQL), its summary and report, and the
acceptance rule (which generation is near chance, which is best). Imports neither host-evolve nor host-serve."""
