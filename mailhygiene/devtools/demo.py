"""The README's demo: a throwaway Dovecot with a generated support mailbox, and the real
``mailhygiene`` commands run against it — index → tag → plan → approve → purge.

    python -m mailhygiene.devtools.demo [--workdir demo-run] [--keep-server]

Everything lives in ``--workdir`` (settings, SQLite index, Dovecot's files); nothing
outside it is touched. Each step prints the command it runs, as a person would type it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from mailhygiene.devtools.dovecot import ThrowawayDovecot
from mailhygiene.devtools.mailbox import generate_demo_mailbox

REPO = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "MAILHYGIENE_DEMO_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
ADMIN, SUPPORT, MANAGER, SECOND_MANAGER = "admin", "anna", "maria", "erik"


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(env: dict[str, str], actor: str, *args: str, check: bool = True) -> str:
    """Run one mailhygiene command as ``actor``, echo it, show its output, return stdout."""
    print(f"$ MAILHYGIENE_ACTOR={actor} mailhygiene {shlex.join(args)}", flush=True)
    completed = subprocess.run(
        [sys.executable, "-m", "mailhygiene", *args],
        env={**env, "MAILHYGIENE_ACTOR": actor},
        text=True,
        capture_output="--json" in args,
        check=False,
    )
    if "--json" in args:
        print(completed.stdout.strip()[:1500], flush=True)
        if completed.stderr:
            print(completed.stderr.strip(), file=sys.stderr)
    if check and completed.returncode != 0:
        raise SystemExit(f"demo step failed with exit code {completed.returncode}")
    return completed.stdout or ""


def write_settings(workdir: Path, port: int, username: str) -> Path:
    settings = workdir / "mailhygiene.toml"
    settings.write_text(
        "# Settings for the demo (see README, 'Configuration').\n"
        "[database]\n"
        'url = "sqlite:///mailhygiene.db"\n\n'
        "[policy]\n"
        f'rules = "{REPO / "rules.toml"}"\n\n'
        "[accounts.support]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'security = "none"          # loopback only; real servers use "tls"\n'
        f'username = "{username}"\n'
        f'password_env = "{PASSWORD_ENV}"\n',
        encoding="utf-8",
    )
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "demo-run")
    parser.add_argument(
        "--keep-server", action="store_true", help="leave Dovecot running and print how to connect"
    )
    args = parser.parse_args()
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    now = datetime.now(UTC).replace(microsecond=0)

    step("1. A throwaway Dovecot on 127.0.0.1 with a generated PROMIX support mailbox")
    server = ThrowawayDovecot(directory=workdir / "dovecot", keep=args.keep_server)
    server.start()
    try:
        summary = generate_demo_mailbox(server, server.username, seed=1, now=now)
        print(
            f"{summary.total:,} messages in {', '.join(summary.folders)}; "
            f"{len(summary.cases)} complaint threads; malformed: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(summary.malformed.items()))}"
        )
        settings = write_settings(workdir, server.port, server.username)
        env = {**os.environ, "MAILHYGIENE_CONFIG": str(settings), PASSWORD_ENV: server.password}

        step("2. Who may do what: an admin, support staff and two managers")
        run(env, ADMIN, "user", "add", ADMIN, "--role", "admin")
        run(env, ADMIN, "user", "add", SUPPORT, "--role", "support")
        run(env, ADMIN, "user", "add", MANAGER, "--role", "manager")
        run(env, ADMIN, "user", "add", SECOND_MANAGER, "--role", "manager")
        run(env, ADMIN, "rules", "check")

        step("3. Index the mailbox (first sync fetches everything)")
        run(env, SUPPORT, "sync")
        run(env, SUPPORT, "status")

        step("4. Complaint cases: sync linked threads by case number; staff tag one by hand")
        case = summary.cases[0]
        first_message = f"<{case.message_ids[0].strip('<>')}>"
        run(env, SUPPORT, "tag", first_message, "--case", case.ref)
        run(env, SUPPORT, "case", "list")
        run(env, SUPPORT, "case", "show", case.ref)

        step("5. Why is a message kept, or when does it go?")
        run(env, SUPPORT, "explain", first_message)
        run(env, SUPPORT, "explain", "--json", "subject:faktura")

        step("6. A manager plans the purge (nothing changes on the server yet)")
        output = run(env, MANAGER, "purge", "plan", "--json")
        ref = json.loads(output)["ref"] if output.strip() else None
        if ref is None:
            print("Nothing is past retention; the demo ends here.")
            return 0
        run(env, MANAGER, "purge", "show", ref, "--sample", "3")

        step("7. Four eyes: the planner cannot approve a bulk cleanup; a second manager does")
        run(env, MANAGER, "purge", "approve", ref, check=False)
        run(env, SECOND_MANAGER, "purge", "approve", ref, "--comment", "reviewed the sample")

        step("8. Execute: every message re-verified, moved to Quarantine, journaled")
        run(env, SECOND_MANAGER, "purge", "execute", ref)
        run(env, SUPPORT, "sync")
        run(env, SUPPORT, "status")
        run(env, MANAGER, "quarantine", "list", "--plan", ref, "--json")

        step("9. The audit trail is intact")
        run(env, ADMIN, "audit", "log", "--limit", "12")
        run(env, ADMIN, "audit", "verify")
        print(f"\nDone. Settings, index and server files are in {workdir}.")
        if args.keep_server:
            print(
                f"Dovecot keeps running on 127.0.0.1:{server.port}; user {server.username}, "
                f"password {server.password}. Try: export MAILHYGIENE_CONFIG={settings} "
                f"{PASSWORD_ENV}=<password>; mailhygiene search subject:reklamation"
            )
        return 0
    finally:
        if not args.keep_server:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
