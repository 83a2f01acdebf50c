from cifarctl.cli import main

main()
