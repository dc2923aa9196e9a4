"""The ``lenssearch`` command line: one typer app whose verbs are the stages of ``dvc.yaml``.

Each verb parses its arguments, loads the typed config, and calls one pure function of a subpackage. Paths come
from ``dvc.yaml`` as arguments; defaults of parameters live in ``params.yaml`` only. Bad input is printed as one
line ``error: ...`` on stderr, without a traceback, and the command exits with status 2.

Heavy imports (TensorFlow, MLflow, great-expectations) happen inside the verbs, so ``lenssearch --help`` is fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from lenssearch._runtime import apply_offline_env
from lenssearch.config import ConfigError, load_config
from lenssearch.errors import LensSearchError

app = typer.Typer(
    name="lenssearch",
    help="Find galaxy-scale strong lenses in multi-band imaging with deep networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", help="Parameter file (the demo profile).")]
ProfileOption = Annotated[
    Optional[Path], typer.Option("--profile", help="Profile overlay applied over --params, e.g. configs/paper.yaml.")
]

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    """Print one error line and exit non-zero."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(EXIT_BAD_INPUT)


def verb(func: Callable) -> Callable:
    """Turn bad-input exceptions raised by a verb into one clear line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (LensSearchError, ConfigError) as exc:
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"{exc.filename}: no such file" if exc.filename else str(exc))
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def load(params: Path, profile: Optional[Path]):
    """Load the configuration for a verb."""
    return load_config(params, profile)


@app.callback()
def _main() -> None:
    """Find galaxy-scale strong lenses in multi-band imaging with deep networks."""
    apply_offline_env()


@app.command("config")
@verb
def config_cmd(params: ParamsOption = Path("params.yaml"), profile: ProfileOption = None) -> None:
    """Check the configuration and print it, merged with the profile if one is given."""
    import yaml

    from lenssearch.config import as_dict

    cfg = load(params, profile)
    typer.echo(yaml.safe_dump(as_dict(cfg), sort_keys=False).rstrip())


@app.command("profile-args")
@verb
def profile_args_cmd(profile: Path) -> None:
    """Print a profile overlay as ``-S key=value`` arguments for ``dvc exp run``."""
    import json

    from lenssearch.config import flatten, read_yaml

    pairs = flatten(read_yaml(profile))
    typer.echo(" ".join(f"-S '{k}={json.dumps(v)}'" for k, v in pairs.items()))


def main() -> None:
    """Entry point for ``python -m lenssearch`` and the console script."""
    app(prog_name="lenssearch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
