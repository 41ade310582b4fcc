from salora_cli.cli.cli import main

main()
