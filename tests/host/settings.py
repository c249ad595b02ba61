"""Settings the host tests share."""

#: host-evolve settings for a run whose learning is not under test: 32 px, no generations, one epoch, acceptance
#: off (max_drop 1), no distillation; a module adds or overrides what it tests
MECHANICS = {"image_size": 32, "generations": 0, "ancestor_epochs": 0, "epochs": 1, "round_to": 4, "min_filters": 2,
             "batch_size": 16, "max_drop": 1.0, "distill_weight": 0.0}
