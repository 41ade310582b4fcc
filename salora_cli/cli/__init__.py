"""The command line: the Typer app with every `salora` command (cli.py; `main` is the console script and
`python -m salora_cli`), and the flags it generates from the config dataclasses (cli_options.py). It
parses and calls into the layers below; heavy imports stay inside the commands, so `--help` loads
neither torch nor transformers."""
