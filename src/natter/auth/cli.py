"""``natter users``: manage the built-in users file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from natter.auth import users as users_file
from natter.errors import NatterError


@click.group(name="users")
def users() -> None:
    """Built-in users for NATTER_AUTH=jwt (a YAML file of argon2 password hashes)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Users file to create or update (NATTER_USERS_FILE of the gateways).",
)
@click.option("--group", "groups", multiple=True, help="A group (repeatable); replaces old ones.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
def add(name: str, path: Path, groups: tuple[str, ...], password_stdin: bool) -> None:
    """Add NAME (or change their password), asking for the password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = users_file.add_user(path, name, password, list(groups) if groups else None)
    except NatterError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{user.name} saved in {path} (groups: {', '.join(user.groups) or 'none'})")


@users.command("list")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def list_users(path: Path) -> None:
    """Names and groups in a users file (never the hashes)."""
    try:
        found = users_file.load_file(path)
    except NatterError as exc:
        raise click.ClickException(exc.message) from None
    for user in sorted(found.values(), key=lambda u: u.name):
        click.echo(f"{user.name}\t{','.join(user.groups)}")
