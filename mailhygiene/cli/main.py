"""The ``mailhygiene`` command group; the only place errors become exit codes.

Exit codes: 0 ok, 1 user error (``MailhygieneError``), 2 usage error (click), 3 safety
refusal (``SafetyRefusal``), 130 interrupted.
"""

from __future__ import annotations

import sys

import click

from mailhygiene import __version__
from mailhygiene.cli.context import AppContext
from mailhygiene.errors import MailhygieneError


class MailhygieneGroup(click.Group):
    """Turns our errors into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MailhygieneError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; run the command again to continue where it stopped", err=True)
            sys.exit(130)
        finally:
            obj = ctx.find_object(AppContext)
            if obj is not None:
                obj.close()


@click.group(cls=MailhygieneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="MAILHYGIENE_CONFIG",
    help="Settings file (default: ./mailhygiene.toml, or $MAILHYGIENE_CONFIG).",
)
@click.version_option(__version__, prog_name="mailhygiene")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Keep a company mailbox in line with its retention policy.

    Index mail from IMAP, link complaint-case conversations, and purge what is past
    retention — safely, with plans, approvals and an audit trail.
    """
    ctx.obj = AppContext(config_option=config_path)


def _register() -> None:
    from mailhygiene.cli import (
        audit_commands,
        case_commands,
        index_commands,
        policy_commands,
        purge_commands,
        subject_commands,
        user_commands,
        web_commands,
    )

    for module in (
        index_commands,
        policy_commands,
        purge_commands,
        user_commands,
        audit_commands,
        case_commands,
        subject_commands,
        web_commands,
    ):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="mailhygiene")
