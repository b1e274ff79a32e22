from ablate.sweep.cli import main

main()
