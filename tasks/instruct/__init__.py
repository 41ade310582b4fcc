"""Instruction tuning and zero-shot transfer: the Alpaca instruction-tuning task (instruct.py) and its
data readers (instruct_data.py); the Alpaca prompt template both share (alpaca_template.py); and the task
side of zero-shot style transfer: the prompt and the answer cut (zero_shot.py), what a reader would see
in a rewrite (output_checks.py) and its scores per direction (transfer_metrics.py). The transfer side
holds no model code: the runner (`salora_cli.transfer`) loads the model and generates."""
