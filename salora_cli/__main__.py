from salora_cli.cli import main

main()
