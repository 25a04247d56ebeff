from freezefix.cli import entry_point

entry_point()
