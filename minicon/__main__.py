from minicon.cli import main

main(prog_name="minicon")
