"""The README's commands are exercised, so the docs cannot rot."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.fixtures.natter import REPO
from tests.fixtures.poll import check_for, free_ports

README = (REPO / "README.md").read_text()


def code_blocks(text: str) -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [
        [line.split("#")[0].strip() for line in b.splitlines() if line.split("#")[0].strip()]
        for b in blocks
    ]


def start_make_up(args: str, log_path: Path) -> subprocess.Popen[bytes]:
    """``make up ARGS=...`` in its own process group (as a terminal runs it), logging to a file."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            ["make", "up", f"ARGS={args}"],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def test_readme_opens_with_exactly_the_two_setup_commands() -> None:
    assert code_blocks(README)[0] == ["make up", "make test"]


def test_every_make_target_in_the_readme_exists() -> None:
    listed = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, check=True)
    targets = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    mentioned = set(re.findall(r"`make (\w[\w-]*)", README)) | {"up", "test"}
    for target in re.findall(r"`(\w[\w-]*)`", README.split("make help")[1].split("\n")[0]):
        mentioned.add(target)
    assert mentioned <= targets, mentioned - targets


def test_make_test_runs_pytest_after_building_the_tools() -> None:
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True
    )
    lines = dry.stdout.splitlines()
    assert any("pytest" in line for line in lines)
    assert any("envtest" in line for line in lines) and any("helm" in line for line in lines)


def test_ci_runs_the_readme_test_command_with_require_all() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "NATTER_REQUIRE_ALL=1" in ci and "make test" in ci


async def test_make_up_starts_natter_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    log_path = tmp_path / "make-up.log"
    make = start_make_up(f"--port {port} --data-dir {tmp_path / 'data'} --gateways 1", log_path)
    try:
        await check_for(
            90,
            lambda: f"natter is up: http://127.0.0.1:{port}" in log_path.read_text(),
            interval=0.2,
            what="make up prints the URL",
        )
        async with httpx.AsyncClient(timeout=5) as http:
            page = await http.get(f"http://127.0.0.1:{port}/")
            assert page.status_code == 200 and "natter" in page.text.lower()
            rooms = (await http.get(f"http://127.0.0.1:{port}/api/rooms")).json()
            assert "general" in {r["name"] for r in rooms}
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        code = make.wait(90)
    # make re-raises the SIGINT it got once natter has exited; natter itself stopped cleanly.
    assert code in (0, -signal.SIGINT), log_path.read_text()[-2000:]
    assert "natter stopped" in log_path.read_text()
    assert "Traceback" not in log_path.read_text()


def test_terminal_client_command_in_readme_is_valid() -> None:
    command = re.search(r"`\.venv/bin/natter chat ([^`]*)`", README.replace("\n", " "))
    assert command is not None
    flags = [a for a in command.group(1).split() if a.startswith("--")]
    helped = subprocess.run(
        [str(REPO / ".venv/bin/natter"), "chat", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert flags and all(flag in helped.stdout for flag in flags)


async def test_the_login_walkthrough_commands_work(tmp_path: Path) -> None:
    block = next(b for b in code_blocks(README) if any("users add" in cmd for cmd in b))
    add, up = block
    users = tmp_path / "users.yaml"
    add_argv = add.replace("users.yaml", str(users)).split()
    subprocess.run(
        add_argv,
        cwd=REPO,
        input="correct horse 1\ncorrect horse 1\n",
        text=True,
        check=True,
        capture_output=True,
        start_new_session=True,
    )
    assert "alice" in users.read_text()
    args = re.search(r'ARGS="([^"]*)"', up)
    assert up.startswith("make up") and args is not None
    port = free_ports(1)[0]
    extra = f" --port {port} --data-dir {tmp_path / 'data'} --gateways 1"
    log_path = tmp_path / "make-up.log"
    make = start_make_up(args.group(1).replace("users.yaml", str(users)) + extra, log_path)
    try:
        await check_for(
            90,
            lambda: "natter is up" in log_path.read_text(),
            interval=0.2,
            what="make up in jwt mode",
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            bad = await http.post("/api/login", json={"user": "alice", "password": "nope"})
            assert bad.status_code == 401
            good = await http.post(
                "/api/login", json={"user": "alice", "password": "correct horse 1"}
            )
            assert good.status_code == 200 and good.json()["token"]
            rooms = await http.get(
                "/api/rooms", headers={"Authorization": f"Bearer {good.json()['token']}"}
            )
            assert rooms.status_code == 200
            assert (await http.get("/api/rooms")).status_code == 401
    finally:
        os.killpg(make.pid, signal.SIGINT)
        make.wait(90)
    assert "natter stopped" in log_path.read_text()
