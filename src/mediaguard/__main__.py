from mediaguard.cli import app

app(prog_name="mediaguard")
