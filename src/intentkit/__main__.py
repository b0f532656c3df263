from intentkit.cli import run

run()
