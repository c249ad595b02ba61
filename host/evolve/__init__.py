"""host-evolve: the evolution (deep evolutionary synthesis of SqueezeNet v1.1), its training and its export.

cli -> evolution (the Evolution loop) -> offspring (one offspring trained to the end) -> synthesis, surgery,
selection, train, data, export; steering holds its stop/steer rules, checkpoints the model and checkpoint files,
run_folder the claim of a run folder, recorder rank 0's writes. It writes the run folder that host/run/ describes.
"""
