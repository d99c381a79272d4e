from kizuna.cli.main import app

app()
