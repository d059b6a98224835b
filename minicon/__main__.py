from minicon.cli import main

main()
