from tunesmith.cli.main import entry

entry()
