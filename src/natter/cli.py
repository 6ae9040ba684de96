"""The ``natter`` command: one CLI for every process (gateway, operator, bridges, up, chat)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from natter import logs
from natter.config import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="natter")
def main() -> None:
    """natter: clustered real-time chat on NATS JetStream."""


def _sync_interval(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from natter.natsconf import valid_sync_interval

    if value is None:
        return None
    try:
        return valid_sync_interval(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.option("--port", default=8080, show_default=True, help="Port the gateways share.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--data-dir",
    default=".natter",
    show_default=True,
    type=click.Path(path_type=Path),
    help="NATS data, logs and cluster.json; history persists here across restarts.",
)
@click.option(
    "--gateways",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Gateway worker processes.",
)
@click.option(
    "--nats-nodes",
    default=3,
    show_default=True,
    type=click.IntRange(1, 7),
    help="NATS cluster size.",
)
@click.option(
    "--rooms",
    default="k8s/rooms",
    show_default=True,
    type=click.Path(path_type=Path),
    help="ChatRoom manifests to apply.",
)
@click.option(
    "--sync-interval",
    default=None,
    callback=_sync_interval,
    metavar="always|DURATION",
    help="How often JetStream fsyncs: 'always' (the default: every write before its ack, "
    "so acks survive power loss) or a duration such as 1s or 2m (faster; see docs/durability.md).",
)
@click.option(
    "--auth",
    type=click.Choice(["open", "jwt"]),
    default="open",
    show_default=True,
    help="open: nickname only; jwt: log in with a users file.",
)
@click.option(
    "--twitch",
    multiple=True,
    metavar="CHANNEL:ROOM",
    help="Bridge a Twitch channel into a room (repeatable).",
)
@click.option(
    "--users",
    "users_file",
    default=None,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Users file for --auth jwt (make one with: natter users add NAME --file FILE).",
)
@click.option(
    "--nats-auth/--no-nats-auth",
    default=None,
    help="One NATS user per component with least-privilege permissions (default: with jwt).",
)
def up(
    port: int,
    host: str,
    data_dir: Path,
    gateways: int,
    nats_nodes: int,
    rooms: Path,
    sync_interval: str | None,
    auth: str,
    twitch: tuple[str, ...],
    users_file: Path | None,
    nats_auth: bool | None,
) -> None:
    """Run natter on this machine: a NATS cluster, gateways and the rooms in k8s/rooms."""
    from natter.up import UpOptions, run_up

    if auth == "jwt" and users_file is None:
        raise click.UsageError("--auth jwt needs --users FILE (natter users add NAME --file FILE)")
    settings = Settings()
    logs.setup(settings.log_level, settings.log_format, process="up")
    options = UpOptions(
        port=port,
        host=host,
        data_dir=data_dir,
        gateways=gateways,
        nats_nodes=nats_nodes,
        rooms=rooms,
        sync_interval=sync_interval,
        auth=auth,
        twitch=list(twitch),
        users_file=users_file,
        nats_auth=nats_auth,
    )
    sys.exit(asyncio.run(run_up(options)))


@main.command()
@click.option("--host", default=None, help="Listen address (default NATTER_HOST).")
@click.option("--port", default=None, type=int, help="Listen port (default NATTER_PORT).")
@click.option(
    "--reuse-port", is_flag=True, help="Share the port with other workers (SO_REUSEPORT)."
)
def gateway(host: str | None, port: int | None, reuse_port: bool) -> None:
    """Serve the WebSocket gateway, HTTP API and web UI."""
    from natter.gateway.server import run

    settings = Settings()
    updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run(settings.model_copy(update=updates), reuse_port=reuse_port)


@main.command()
@click.option("--namespace", default=None, help="Watch ChatRooms in this namespace only.")
@click.option("--all-namespaces", "all_namespaces", is_flag=True, help="Watch every namespace.")
def operator(namespace: str | None, all_namespaces: bool) -> None:
    """Run the ChatRoom operator (kopf)."""
    if (namespace is None) == (not all_namespaces):
        raise click.UsageError("give exactly one of --namespace NS or --all-namespaces")
    from natter_operator.main import run

    run(namespace=namespace, all_namespaces=all_namespaces)


@main.group()
def bridge() -> None:
    """Bridges that bring other chats into rooms."""


@bridge.command()
@click.option("--channel", required=True, help="Twitch channel (without #).")
@click.option("--room", required=True, help="natter room to publish into.")
@click.option("--server", default=None, help="IRC server HOST:PORT (default Twitch's).")
@click.option(
    "--tls/--no-tls",
    default=None,
    help="TLS to the IRC server (default: on, or NATTER_TWITCH_TLS).",
)
def twitch(channel: str, room: str, server: str | None, tls: bool | None) -> None:
    """Bridge a Twitch channel's chat into a room."""
    from natter.bridges.twitch import run

    run(channel=channel, room=room, server=server, tls=tls, settings=Settings())  # type: ignore[arg-type]


@main.command()
@click.option("--room", required=True, help="Room to join.")
@click.option("--user", required=True, help="Your nickname.")
@click.option("--url", default="ws://127.0.0.1:8080/ws", show_default=True, help="Gateway URL.")
@click.option("--since", default=None, type=int, help="Replay from after this seq.")
def chat(room: str, user: str, url: str, since: int | None) -> None:
    """Chat in a room from the terminal; 'quit' exits."""
    from natter.chat import run

    sys.exit(run(url=url, room=room, user=user, since=since))


def _register() -> None:
    from natter.auth.cli import users

    main.add_command(users)


_register()
