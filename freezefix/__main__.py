from freezefix.cli import main

main()
