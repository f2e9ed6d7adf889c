"""`python -m dispatch ...`: the same as the `dispatch` command."""

if __name__ == "__main__":  # not when a worker process re-imports the main module (spawn)
    from dispatch.cli import run

    run()
