"""One run, start to end: the training loop on accelerate (train.py) with its length-grouped batches
(batching.py), experiment trackers (tracking.py) and random-state capture for checkpoints (rng.py);
reloading a finished run from its folder to evaluate or export it (evaluation.py); and a trained run's
predictions for new rows (predict.py). It joins a task (`tasks`) and a method (`salora_cli.methods`)
and knows nothing of grids, reports or the command line."""
