from mailhygiene.cli.main import main

main()
