"""``python -m lenssearch`` runs the command line."""

from lenssearch.cli import main

if __name__ == "__main__":
    main()
