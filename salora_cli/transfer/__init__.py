"""Zero-shot style transfer and the scorers behind style results: `salora transfer` of a run or a base
model (transfer.py) and its settings with their recorded defaults (transfer_config.py); the style
classifier and fluency LM that score style-transfer outputs, handed to a style run's final test and used
by every transfer (style_scoring.py). It reloads runs through `salora_cli.run` and reads run records
through `salora_cli.reports`."""
