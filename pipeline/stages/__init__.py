"""One module per DVC stage (dvc.yaml): each `run(params)` reads its inputs, calls the
statistics and writes its artifacts. The only layer below the commands that reads or writes
the project's files."""
